"""The producer's writes, on both databases."""

from __future__ import annotations

from sqlalchemy import func, select

from db import jobs, runs
from db.models import Image, Run, RunImage
from tests.db.conftest import new_image


def test_images_are_stored_once_and_take_the_next_positions(sessions, run):
    with sessions() as session:
        stored = session.get(Run, run)
        added, created = runs.add_images(session, stored, [new_image(0, 0), new_image(9, 1), new_image(9, 1)])
        session.commit()
        assert len(added) == 1 and created == added  # image 0 is in the run already; image 9 is stored once
        assert session.scalar(select(func.count()).select_from(Image)) == 4 and stored.image_count == 4
        positions = session.execute(
            select(RunImage.position, RunImage.true_label).where(RunImage.run_id == run).order_by(RunImage.position)
        ).all()
        assert [tuple(row) for row in positions] == [(0, 0), (1, 1), (2, None), (3, 1)]
        assert jobs.images_at(session, run, 3, 10) == added


def test_a_second_run_of_the_same_model_stores_no_second_copy(sessions, run):
    with sessions() as session:
        runs.store_model_file(session, "a" * 64, b"model", {})
        other = runs.create_run(
            session, name="again", model_path="m.keras", model_sha256="a" * 64, class_names=["cat", "dog"], params={},
            source="test", value_range=[0.0, 255.0], preprocess="vgg16", skipped=[{"source": "x.png", "reason": "bad"}],
        )
        added, created = runs.add_images(session, other, [new_image(1, 1)])
        session.commit()
        assert created == [] and len(added) == 1
        assert (other.value_range, other.preprocess, other.skipped) == ([0.0, 255.0], "vgg16", [{"source": "x.png", "reason": "bad"}])


def test_an_image_known_by_reference_gets_its_pixels_when_a_run_copies_it(sessions, run):
    with sessions() as session:
        referenced = new_image(5, 0)
        referenced.png, referenced.path = None, "/shared/five.png"
        stored = session.get(Run, run)
        [image_id], _ = runs.add_images(session, stored, [referenced])
        session.commit()
        assert (session.get(Image, image_id).png, session.get(Image, image_id).path) == (b"", "/shared/five.png")
        runs.add_images(session, stored, [new_image(5, 0)])  # the same picture, by copy, in the same run
        session.commit()
        session.expire_all()
        assert session.get(Image, image_id).png.startswith(b"\x89PNG") and session.get(Image, image_id).path is None

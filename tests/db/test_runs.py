"""The producer's writes, on both databases."""

from __future__ import annotations

from sqlalchemy import func, select

from db import runs
from db.models import Image, Run
from tests.db.conftest import new_image


def test_images_are_stored_once_and_joined_in_their_positions(sessions, run):
    with sessions() as session:
        stored = session.get(Run, run)
        added, created = runs.add_images(session, stored, [(3, new_image(0, 0)), (4, new_image(9, 1)), (5, new_image(9, 1))])
        session.commit()
        assert len(added) == 1 and created == added  # image 0 is in the run already; image 9 is stored once
        assert session.scalar(select(func.count()).select_from(Image)) == 4 and stored.image_count == 4
        labels = runs.run_labels(session, run)
        assert [label for _, label in labels] == [0, 1, None, 1]
        assert runs.images_without_result(session, run) == [image_id for image_id, _ in labels]


def test_a_second_run_of_the_same_model_stores_no_second_copy(sessions, run):
    with sessions() as session:
        runs.store_model_file(session, "a" * 64, b"model", {})
        other = runs.create_run(
            session, name="again", model_path="m.keras", model_sha256="a" * 64, class_names=["cat", "dog"], params={},
            source="test", value_range=[0.0, 255.0], preprocess="vgg16", skipped=[{"source": "x.png", "reason": "bad"}],
        )
        added, created = runs.add_images(session, other, [(0, new_image(1, 1))])
        session.commit()
        assert created == [] and len(added) == 1
        assert (other.value_range, other.preprocess, other.skipped) == ([0.0, 255.0], "vgg16", [{"source": "x.png", "reason": "bad"}])

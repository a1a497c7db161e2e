"""The audit on a run with a planted shortcut, explained by the real engine and stored in both databases: a model
(a plain function) calls an image class 0 when its centre is bright, or when its bottom-right corner is; the class-1
images with a bright corner are its mistakes, and the audit must find them as their own group."""

from __future__ import annotations

import numpy as np
from sqlalchemy import select, text

from audit import maps, service
from core import images
from db import runs
from db.formats import decode_maps, encode_mask
from db.models import ImageEvidence, RunAudit, StrategyGroup
from tests.db.conftest import claimed, save_result
from worker.engine import ExplainParams, explain

SIZE = 24
CENTRE = (slice(8, 16), slice(8, 16))
CORNER = (slice(18, 24), slice(18, 24))
PARAMS = ExplainParams(num_samples=64, segmentation="slic", n_segments=16)


def model(batch: np.ndarray) -> np.ndarray:
    centre = batch[:, CENTRE[0], CENTRE[1]].mean(axis=(1, 2, 3))
    corner = batch[:, CORNER[0], CORNER[1]].mean(axis=(1, 2, 3))
    p0 = 1 / (1 + np.exp(-20 * (np.maximum(centre, corner) - 0.6)))
    return np.stack([p0, 1 - p0], axis=1)


def planted(count: int = 84):
    """Images, labels, whether tagged, evidence masks: a third class 0 (bright centre), the rest class 1, half of those
    with the corner tag."""
    rng = np.random.default_rng(1)
    pictures = rng.uniform(0, 0.3, (count, SIZE, SIZE, 3)).astype(np.float32)
    labels = np.array([0] * (count // 3) + [1] * (count - count // 3))
    tagged = np.zeros(count, dtype=bool)
    tagged[count // 3::2] = True
    evidence = np.zeros((count, SIZE, SIZE), dtype=bool)
    evidence[labels == 0, CENTRE[0], CENTRE[1]] = True
    pictures[labels == 0, CENTRE[0], CENTRE[1]] = 0.95
    pictures[tagged, CORNER[0], CORNER[1]] = 0.95
    return pictures, labels, tagged, evidence


def stored_run(session, name: str, pictures: np.ndarray, labels: np.ndarray):
    """A run of the function model over these images, stored as the producer stores them: (run, image ids, pixels)."""
    runs.store_model_file(session, "b" * 64, b"model", {"class_names": ["bright", "dark"]})
    run = runs.create_run(session, name=name, model_path="m.keras", model_sha256="b" * 64,
                          class_names=["bright", "dark"], params=PARAMS.to_dict(), source="test", value_range=[0.0, 1.0])
    stored = [images.to_uint8(p) for p in pictures]
    ids, _ = runs.add_images(session, run, [
        runs.NewImage(images.pixels_sha256(p), images.png_bytes(p), f"{name}-{i}.png", SIZE, SIZE, 3, int(labels[i]))
        for i, p in enumerate(stored)])
    return run, ids, stored


def test_the_audit_finds_the_planted_shortcut_and_the_evidence_figures(sessions):
    pictures, labels, tagged, evidence = planted()
    with sessions() as session:
        run, ids, stored = stored_run(session, "planted", pictures, labels)
        for image_id, mask in zip(ids, evidence):
            if mask.any():
                session.add(ImageEvidence(image_id=image_id, mask=encode_mask(mask), pixels=int(mask.sum())))
        run.status = "running"
        session.commit()
        expected = {}
        for image_id, picture, mask in zip(ids, stored, evidence):
            job = claimed(session, run.id, image_id, "w")
            result = explain(picture.astype(np.float32) / 255, model, PARAMS, true_label=job.true_label)
            assert save_result(session, job, result, "w")
            if mask.any():  # independently: per pixel, as the quality benchmark measures it
                weights = result.labels[job.true_label].weights
                top = int(np.argmax(weights))
                per_pixel = np.clip(weights, 0, None)[result.segments]
                expected[image_id] = (mask[result.segments == top].mean() >= 0.5, per_pixel[mask].sum() / per_pixel.sum())
        session.commit()

        audit = service.ensure_audit(session, run)
        assert (audit.grid_height, audit.grid_width, audit.explanations) == (SIZE, SIZE, len(ids))
        assert service.current_audit(session, run) is not None
        groups = service.group_views(session, run)
        first = groups[0]
        members = {image_id for image_id, _ in service.group_members(session, run.id, first.label, first.strategy)}
        shortcut = {image_id for image_id, is_tagged, label in zip(ids, tagged, labels) if is_tagged and label == 1}
        assert first.suspected and first.class_name == "bright" and first.location == "bottom right"
        assert members == shortcut, first.line()
        assert first.error_rate == 1.0 and first.size == len(shortcut)
        assert not any(group.suspected for group in groups[1:])
        # the view answers "the mistakes that share a strategy" in plain SQL
        rows = session.execute(text(
            "SELECT image_id FROM strategies WHERE run_id = :run AND suspected AND NOT correct"), {"run": run.id}).all()
        assert {row.image_id for row in rows} == shortcut

        reasons = {row.image_id: row for row in session.execute(
            text("SELECT * FROM reasons WHERE run_id = :run"), {"run": run.id})}
        assert set(reasons) == set(expected)
        for image_id, (pointing, share) in expected.items():
            assert bool(reasons[image_id].pointing) == pointing
            assert abs(reasons[image_id].evidence_share - share) < 1e-9
        rates = service.evidence_rates(session, run)
        assert [(rate.class_name, rate.images) for rate in rates] == [("bright", len(expected))]
        assert rates[0].pointing > 0.8

        cells = {(m.true_label, m.predicted_label): m for m in service.class_maps(session, run.id)}
        confused = decode_maps(cells[(1, 0)].mean_map)
        assert maps.location(confused) == "bottom right" and cells[(1, 0)].images == len(shortcut)
        assert maps.location(decode_maps(cells[(0, 0)].mean_map)) == "centre"
        assert cells[(None, 0)].mean_image is not None


def test_maps_missing_from_older_rows_are_made_by_the_audit_and_kept(sessions):
    pictures, labels, _, _ = planted(30)
    with sessions() as session:
        run, ids, stored = stored_run(session, "old", pictures, labels)
        run.status = "running"
        session.commit()
        for image_id, picture in zip(ids, stored):
            job = claimed(session, run.id, image_id, "w")
            save_result(session, job, explain(picture / 255, model, PARAMS, true_label=job.true_label), "w")
        session.commit()
        saved = dict(session.execute(text("SELECT image_id, relevance FROM explanations WHERE run_id = :r"),
                                     {"r": run.id}).all())
        session.execute(text("UPDATE explanations SET relevance = NULL WHERE run_id = :r"), {"r": run.id})
        session.commit()
        service.ensure_audit(session, run)
        remade = dict(session.execute(text("SELECT image_id, relevance FROM explanations WHERE run_id = :r"),
                                      {"r": run.id}).all())
        assert all(np.array_equal(decode_maps(remade[i]), decode_maps(saved[i])) for i in ids)
        assert session.scalar(select(StrategyGroup.size).where(StrategyGroup.run_id == run.id,
                                                               StrategyGroup.strategy == 0)) is not None
        assert session.get(RunAudit, run.id).explanations == len(ids)

"""Migrations keep what is there: runs made before the input contract get the value range they were fed."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from tests.services import empty_database
from db.migrate import upgrade

NOW = datetime(2026, 11, 28, tzinfo=timezone.utc)
MODEL_FILES = sa.table("model_files", *(sa.column(c) for c in ("sha256", "size", "created_at")),
                       sa.column("content", sa.LargeBinary), sa.column("metadata", sa.JSON))
RUNS = sa.table("runs", *(sa.column(c) for c in ("id", "name", "model_path", "model_sha256", "source", "status",
                                                  "image_count", "created_at")),
                sa.column("class_names", sa.JSON), sa.column("params", sa.JSON))
IMAGES = sa.table("images", *(sa.column(c) for c in ("id", "sha256", "source", "width", "height", "channels",
                                                      "created_at")), sa.column("png", sa.LargeBinary))
EXPLANATIONS = sa.table("explanations", *(sa.column(c) for c in ("id", "run_id", "image_id", "status", "attempts",
                                                                  "updated_at")))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_revision_0002_fills_the_value_range_of_earlier_runs_and_keeps_their_results(backend, tmp_path):
    with empty_database(backend, tmp_path) as url:
        upgrade(url, revision="0001")
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            connection.execute(sa.insert(MODEL_FILES), [
                {"sha256": "a" * 64, "content": b"\0", "size": 1, "metadata": {"value_range": [0.0, 255.0]}, "created_at": NOW},
                {"sha256": "b" * 64, "content": b"\0", "size": 1, "metadata": {"class_names": ["x", "y"]}, "created_at": NOW},
            ])
            connection.execute(sa.insert(RUNS), [
                {"id": run_id, "name": "old", "model_path": "m.keras", "model_sha256": sha, "class_names": ["x", "y"],
                 "params": {}, "source": "s", "status": "done", "image_count": 1, "created_at": NOW}
                for run_id, sha in ((1, "a" * 64), (2, "b" * 64))
            ])
            connection.execute(sa.insert(IMAGES), {"id": 1, "sha256": "c", "source": "i.png", "width": 1, "height": 1,
                                                   "channels": 3, "png": b"\0", "created_at": NOW})
            connection.execute(sa.insert(EXPLANATIONS), {"id": 1, "run_id": 1, "image_id": 1, "status": "ok",
                                                         "attempts": 1, "updated_at": NOW})
        engine.dispose()

        upgrade(url)
        engine = sa.create_engine(url)
        runs = sa.table("runs", sa.column("id"), sa.column("value_range", sa.JSON), sa.column("outputs"),
                        sa.column("input_check", sa.JSON))
        with engine.connect() as connection:
            rows = connection.execute(sa.select(runs).order_by(runs.c.id)).all()
            explanations = connection.scalar(sa.select(sa.func.count()).select_from(EXPLANATIONS))
        engine.dispose()
    assert [tuple(row) for row in rows] == [(1, [0.0, 255.0], "probabilities", None), (2, [0.0, 1.0], "probabilities", None)]
    assert explanations == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_revision_0005_says_earlier_runs_drew_independent_masks_with_limes_fit(backend, tmp_path):
    with empty_database(backend, tmp_path) as url:
        upgrade(url, revision="0004")
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            connection.execute(sa.insert(MODEL_FILES), {"sha256": "a" * 64, "content": b"\0", "size": 1, "metadata": {},
                                                        "created_at": NOW})
            connection.execute(sa.insert(RUNS), {
                "id": 1, "name": "old", "model_path": "m.keras", "model_sha256": "a" * 64, "class_names": ["x", "y"],
                "params": {"num_samples": "auto", "segmentation": "slic", "hide": "grey"}, "source": "s",
                "status": "done", "image_count": 1, "created_at": NOW})
        engine.dispose()

        upgrade(url)
        engine = sa.create_engine(url)
        with engine.connect() as connection:
            params = connection.scalar(sa.select(RUNS.c.params))
        engine.dispose()
    assert params == {"num_samples": "auto", "segmentation": "slic", "hide": "grey", "design": "independent",
                      "estimator": "lime"}

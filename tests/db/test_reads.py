"""What the commands read, on both databases: counts over labelled images only, the predicted classes, the views."""

from __future__ import annotations

import numpy as np
import pytest

from db import reads
from tests.db.conftest import claimed, image_ids, save_result
from worker.engine import ExplainParams, explain


def constant(images):
    return np.tile([0.8, 0.2], (len(images), 1))  # always "cat"


def explain_every_image(session, run: int, ids: list[int]) -> None:
    """Explain and save each of the run's images as a worker would (the model always says "cat"); committed."""
    image = np.random.default_rng(0).random((8, 8, 3)).astype(np.float32)
    for image_id in ids:
        job = claimed(session, run, image_id, "w")
        result = explain(image, constant, ExplainParams(num_samples=20, segmentation="slic", n_segments=4),
                         true_label=job.true_label)
        save_result(session, job, result, "w")
    session.commit()


def test_accuracy_counts_the_labelled_images_and_the_views_agree(sessions, run):
    ids = image_ids(sessions, run)
    with sessions() as session:
        explain_every_image(session, run, ids)
        counts = reads.run_counts(session, run)
        assert (counts.total, counts.ok, counts.labelled, counts.correct, counts.misclassified) == (3, 3, 2, 1, 1)
        progress = reads.run_progress(session, run)
        assert (progress.total, progress.finished, progress.failed, progress.remaining) == (3, 3, 0, 0)
        assert counts.accuracy == pytest.approx(0.5)
        assert reads.predicted_classes(session, run) == [("cat", 3)]
        wrong = reads.misclassified(session, run)
        assert [(row["image_id"], row["true_label"], row["predicted_label"]) for row in wrong] == [(ids[1], "dog", "cat")]
        assert wrong[0]["insertion_auc"] is not None and set(wrong[0]) == set(reads.MISCLASSIFIED_COLUMNS)
        assert reads.confusion(session, run) == [
            {"true_label": "cat", "predicted_label": "cat", "n": 1}, {"true_label": "dog", "predicted_label": "cat", "n": 1}
        ]
        assert reads.find_run(session, "cats").id == run == reads.find_run(session, str(run)).id
        with pytest.raises(reads.RunNotFound):
            reads.find_run(session, "nobody's")


def test_the_sampling_spread_counted_in_sql_is_numpys(sessions, run):
    from sqlalchemy import update

    from db.models import Explanation

    ids = image_ids(sessions, run)
    with sessions() as session:
        explain_every_image(session, run, ids)
        for samples, calls, stops in (([400, 100, 200], [5, 2, 3], ["cap", "settled", "settled"]),
                                      ([300, 100, None], [4, 1, None], ["cap", "settled", None])):
            for image_id, used, called, stop in zip(ids, samples, calls, stops):
                session.execute(update(Explanation).where(Explanation.run_id == run, Explanation.image_id == image_id)
                                .values(samples_used=used, model_calls=called, sampling_stop=stop))
            spread = reads.sampling_spread(session, run)
            recorded = [value for value in samples if value is not None]
            assert (spread.fewest, spread.median, spread.most) == (min(recorded), np.median(recorded), max(recorded))
            assert spread.mean_model_calls == pytest.approx(np.mean([value for value in calls if value is not None]))
            assert spread.stops == {stop: stops.count(stop) for stop in stops if stop is not None}

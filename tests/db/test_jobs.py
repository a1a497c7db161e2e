"""The workers' claim/save protocol on both databases: one row per (run, image), whatever the deliveries."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from sqlalchemy import func, select

from db import jobs
from db.models import Explanation, Run, SegmentWeight
from tests.db.conftest import claimed, image_ids, save_result
from worker.engine import ExplainParams, explain


def two_class(images):
    p = images.mean(axis=(1, 2, 3))
    return np.stack([p, 1 - p], axis=1)


@pytest.fixture
def result():
    image = np.random.default_rng(0).random((8, 8, 3)).astype(np.float32)
    return explain(image, two_class, ExplainParams(num_samples=20, segmentation="slic", n_segments=4))


def test_every_delivery_counts_an_attempt_until_the_row_is_finished(sessions, run, result):
    first = image_ids(sessions, run)[0]
    with sessions() as session:
        assert claimed(session, run, first, "a").attempts == 1
        session.commit()
        job = claimed(session, run, first, "b")
        session.commit()
        assert job.attempts == 2 and not job.finished and job.value_range == [0.0, 1.0]
        assert save_result(session, job, result, "b")
        session.commit()
        read = jobs.read_job(session, run, first)
        assert read.finished and read.attempts == 2  # the task sees it finished before claiming
        again = jobs.claim(session, read, "c")
        assert again.finished and again.attempts == 2  # and a finished row is left alone
        with pytest.raises(jobs.RunImageDoesNotExist):
            jobs.read_job(session, run, 999999)


def test_two_deliveries_at_once_write_one_result(sessions, run, result):
    """Both claim; the first writes and holds its transaction open; the second's write waits for it, then finds
    the row finished and writes nothing: no second set of weights."""
    first = image_ids(sessions, run)[0]
    with sessions() as a, sessions() as b:
        job_a = claimed(a, run, first, "a")
        a.commit()
        job_b = claimed(b, run, first, "b")
        b.commit()
        assert save_result(a, job_a, result, "a")  # not committed yet: its row is locked
        second: list[bool] = []
        waiting = threading.Thread(target=lambda: second.append(save_result(b, job_b, result, "b")))
        waiting.start()
        waiting.join(1.0)
        a.commit()
        waiting.join(60)
        b.commit()
        assert second == [False]
        assert not jobs.save_failure(b, job_b, "late", "b")
    with sessions() as session:
        row = session.scalars(select(Explanation).where(Explanation.run_id == run, Explanation.image_id == first)).one()
        weights = session.scalar(select(func.count()).select_from(SegmentWeight).where(SegmentWeight.explanation_id == row.id))
        assert (row.status, row.worker_host, row.error) == ("ok", "a", None)
        assert weights == result.n_segments * len(result.labels)


def test_the_run_is_done_when_its_last_image_is_finished(sessions, run, result):
    ids = image_ids(sessions, run)
    with sessions() as session:
        for number, image_id in enumerate(ids):
            job = claimed(session, run, image_id, "w")
            if number == 1:
                jobs.save_failure(session, job, "broken", "w")
            else:
                save_result(session, job, result, "w")
            session.commit()  # the count and, with the last image, "done" come with the result
            stored = session.get(Run, run)
            session.refresh(stored)
            assert (stored.finished_count, stored.status) == (number + 1, "done" if number == len(ids) - 1 else "running")
        assert not jobs.finish_run_if_complete(session, run) and jobs.sent_unfinished(session) == []


def test_the_input_check_reads_its_sample_and_stores_its_figures(sessions, run):
    ids = image_ids(sessions, run)
    with sessions() as session:
        stored, sample = jobs.input_check_sample(session, run, [ids[2], ids[0]])
        assert [label for *_, label in sample] == [None, 0] and all(image.png.startswith(b"\x89PNG") for image, _ in sample)
        assert jobs.runs_without_input_check(session) == [run]
        jobs.save_input_check(session, run, {"warning": None, "images": 2})
        session.commit()
        assert session.get(Run, run).input_check == {"warning": None, "images": 2}
        assert jobs.runs_without_input_check(session) == []


def test_the_window_sends_each_image_once_in_order_and_finds_the_sent_unfinished(sessions, run):
    ids = image_ids(sessions, run)
    with sessions() as first, sessions() as second:
        [feedable] = jobs.runs_to_feed(first)
        [same] = jobs.runs_to_feed(second)
        assert (feedable.next_position, feedable.stored) == (0, 3)
        assert jobs.take_for_sending(first, feedable, jobs.images_at(first, run, 0, 2))
        first.commit()
        assert not jobs.take_for_sending(second, same, jobs.images_at(second, run, 0, 2))  # the cursor moved: no
        second.rollback()
        [feedable] = jobs.runs_to_feed(second)
        assert feedable.next_position == 2
        assert jobs.sent_unfinished(second) == [(run, ids[0]), (run, ids[1])]
        job = claimed(second, run, ids[0], "w")  # a queued row is claimed like any unfinished one
        assert (job.status, job.attempts, job.true_label) == ("running", 1, 0)
        second.commit()
        assert jobs.sent_unfinished(second) == [(run, ids[0]), (run, ids[1])]

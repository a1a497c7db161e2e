"""The database is the job, Redis a window of it: with MAX_QUEUED=5 the broker's queue never holds more than five
tasks, `producer status` says where the rest wait, and two runs share the workers."""

from __future__ import annotations

import re
import threading

import pytest
import redis
from sqlalchemy import func, select

from db.models import Explanation, Run
from tests.services import redis_database, redis_url
from tests.stack import flat, run_id_of, stacks

WINDOW = {"MAX_QUEUED": "5", "FEED_INTERVAL_S": "0.2"}


@pytest.fixture(scope="module")
def windowed(tmp_path_factory, rectangles_model):
    """A stack on PostgreSQL and its own Redis database whose window is five tasks; no worker yet."""
    with redis_database(redis_url(14)) as broker, stacks(tmp_path_factory.mktemp("window"), rectangles_model, settings=WINDOW) as make:
        yield make(broker)


def test_the_broker_holds_a_window_and_the_database_the_rest(windowed):
    client = redis.Redis.from_url(windowed.env["CELERY_BROKER_URL"])
    run_id = run_id_of(windowed.enqueue("--dataset", "rectangles", "--limit", "30", "--name", "windowed").stdout)
    assert client.llen("celery") == 5  # the first window: the input check and 4 images
    status = flat(windowed.cli("producer", "status", "windowed").stdout)
    assert re.search(r"remaining are 26 waiting in the database, 4 queued in the broker, 0 running", status), status
    most = [0]
    watching = threading.Event()

    def watch():
        while not watching.is_set():
            most[0] = max(most[0], client.llen("celery"))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        windowed.start_worker()
        counts = windowed.wait_finished(run_id, timeout=300)
    finally:
        watching.set()
        watcher.join()
    assert (counts.ok, most[0]) == (30, 5)  # refilled as it drained, never above the window
    client.close()


def test_two_runs_share_the_workers(windowed):
    windowed.retire(windowed.worker) if windowed.workers else None
    first = run_id_of(windowed.enqueue("--dataset", "rectangles", "--limit", "40", "--name", "long").stdout)
    second = run_id_of(windowed.enqueue("--dataset", "rectangles", "--limit", "8", "--name", "short").stdout)
    windowed.start_worker()
    windowed.wait_finished(second, timeout=300)
    windowed.wait_finished(first, timeout=300)
    with windowed.session() as session:  # when the short run ended, by the workers' own clock: no race with a poll
        short_end = session.get(Run, second).finished_at
        long_done = session.scalar(select(func.count()).select_from(Explanation).where(
            Explanation.run_id == first, Explanation.status == "ok", Explanation.updated_at <= short_end))
    # the short run, sent after the long one, did not wait for it: the window gave both equal shares
    assert long_done <= 24, long_done

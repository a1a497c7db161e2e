"""PostgreSQL unreachable in the middle of a run: tasks retry with backoff, and the run completes once
the database is back. The database is a cluster of this test's own, on a spare port."""

from __future__ import annotations

import time

import pytest

from tests.services import PostgresServer
from tests.faults.figures import IMAGES, MIDWAY, Holds, assert_nothing_lost_or_doubled, enqueue_run, report

OUTAGE_S = 12


@pytest.fixture
def own_postgres():
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.remove()  # stopped if running, its folder deleted, even when it failed to start


def test_postgresql_down_for_a_while_then_the_run_completes(redis_server, own_postgres, stack_on):
    faults = stack_on(redis_server.url, own_postgres.url)
    run_id = enqueue_run(faults, "database-down")
    holds = Holds.once_at(faults, run_id, (MIDWAY,))
    faults.start_worker()
    image_id, delivery, _ = holds.next()  # the run cannot end before the outage
    own_postgres.stop()  # fast shutdown: every open connection is cut
    holds.release(image_id, delivery)  # its result is saved while the database is away: the task retries
    time.sleep(OUTAGE_S)
    own_postgres.start()
    faults.engine.dispose()  # the test's own pooled connections were cut too
    faults.wait_finished(run_id, IMAGES, timeout=300)
    figures = report(faults, f"PostgreSQL stopped for {OUTAGE_S} s", run_id, 1)
    retried = sum(log.read_text().count("Retry in") for log in faults.tmp.glob("worker-*.log"))
    print(f"task retries logged by the workers: {retried}")
    assert_nothing_lost_or_doubled(figures)
    assert figures["ok"] == IMAGES and retried >= 1

"""Waiting on conditions, never on sleeps: one helper for any condition (the benchmarks', benchmarks/services.py), one
for a run's finished images, one for a broker with nothing left to deliver."""

from __future__ import annotations

import redis

from benchmarks.services import wait_until
from db import reads


def wait_for_run(session_factory, run_id: int, at_least: int | None = None, timeout: float = 240) -> reads.RunCounts:
    """Until every image of the run (or `at_least` of them) has a finished (ok or failed) result; its counts."""

    def counts() -> reads.RunCounts | None:
        with session_factory() as session:
            found = reads.run_counts(session, run_id)
        return found if found.finished >= (found.total if at_least is None else at_least) else None

    return wait_until(counts, f"run {run_id} finished", timeout, every=0.1)


def broker_idle(broker_url: str, queue: str = "celery") -> bool:
    """Nothing waits in the queue and no worker holds a message it has not acknowledged (kombu's `unacked`)."""
    client = redis.Redis.from_url(broker_url)
    try:
        return client.llen(queue) == 0 and client.hlen("unacked") == 0
    finally:
        client.close()

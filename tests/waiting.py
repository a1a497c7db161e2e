"""Waiting on conditions, never on sleeps: one helper for any condition, one for a run's finished images, one for a
broker with nothing left to deliver."""

from __future__ import annotations

import time

import redis

from db import reads


def wait_until(condition, what: str, timeout: float = 120, every: float = 0.2):
    """Poll `condition` until it returns something true, and return that; connection errors count as not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if result := condition():
                return result
        except (OSError, redis.ConnectionError):  # requests' ConnectionError is an OSError too
            pass
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout} s")


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

"""Redis restarted in the middle of a run: without persistence the queue is gone and `producer resume`
completes the run; with compose's persistence the run completes by itself.

The sweeper (which would also send lost images again) is switched off here, so each test shows the one
mechanism it is about."""

from __future__ import annotations

import json
import re
import time

import pytest
import redis

from tests.services import RedisServer
from tests.faults.stack import IMAGES, Faults, assert_nothing_lost_or_doubled
from worker.messages import EXPLAIN_TASK

pytestmark = pytest.mark.slow  # minutes of real faults; CI runs them

SWEEPER_OFF = {"SWEEP_INTERVAL_S": "3600"}


def restart_midway(server: RedisServer, stack_on, name: str) -> tuple[Faults, int]:
    """A worker (without the sweeper) and a run on `server`, restarted with SIGTERM, as `docker compose
    restart redis` does, once 30 images are finished."""
    faults = stack_on(server.url)
    faults.env.update(SWEEPER_OFF)
    faults.start_worker()
    run_id = faults.enqueue(name)
    faults.wait_finished(run_id, 30)
    server.restart()
    return faults, run_id


def test_redis_restarted_without_persistence_then_resume_completes_the_run(redis_server, stack_on):
    faults, run_id = restart_midway(redis_server, stack_on, "redis-forgot")  # nothing on disk: the queue is gone
    time.sleep(5)  # the worker reconnects; tasks that were running finish, then nothing more comes
    stalled_at = faults.counts(run_id).finished
    time.sleep(3)
    assert faults.counts(run_id).finished == stalled_at < IMAGES  # the run is stuck without its queue
    resumed = faults.cli("producer", "resume", str(run_id), "--wait").stdout
    sent_again = int(re.search(r"(\d+) images sent again", resumed).group(1))
    figures = faults.report("Redis restarted without persistence, then resume", run_id, 1)
    print(f"finished when stuck: {stalled_at}; resume sent {sent_again} images again")
    assert_nothing_lost_or_doubled(figures)
    assert figures["ok"] == IMAGES and sent_again == IMAGES - stalled_at


def test_redis_restarted_with_composes_persistence_completes_the_run_by_itself(compose_redis, stack_on):
    faults, run_id = restart_midway(compose_redis, stack_on, "redis-kept")  # the append-only file keeps the queue
    at_restart = faults.counts(run_id).finished
    faults.wait_finished(run_id, IMAGES, timeout=300)
    figures = faults.report("Redis (compose's AOF) restarted", run_id, 1)
    print(f"finished at the restart: {at_restart}; no resume, no resend")
    assert_nothing_lost_or_doubled(figures)
    assert figures["ok"] == IMAGES


def test_messages_taken_from_the_queue_and_lost_are_sent_again_by_the_sweeper(redis_server, stack_on):
    """Kombu pops a message, then records it as held: a worker killed in between loses it for good.
    Here the test pops five messages itself and drops them; the workers' sweeper sends them again."""
    faults = stack_on(redis_server.url)
    run_id = faults.enqueue("taken-and-lost")
    client = redis.Redis.from_url(redis_server.url)
    dropped, kept = [], []
    while len(dropped) < 5:  # the oldest five image tasks, as a worker's BRPOP takes them
        message = client.rpop("celery")
        (dropped if json.loads(message)["headers"]["task"] == EXPLAIN_TASK else kept).append(message)
    for message in reversed(kept):  # the run's input check goes back where it was, oldest first
        client.rpush("celery", message)
    client.close()
    assert len(kept) == 1
    faults.start_worker()
    faults.wait_finished(run_id, IMAGES, timeout=300)
    figures = faults.report("5 messages taken from the queue and lost", run_id, 5)
    resent = faults.sent_again_by_sweeper()
    print(f"the sweeper sent again: {resent}")
    assert_nothing_lost_or_doubled(figures)
    assert figures["ok"] == IMAGES and resent == 5

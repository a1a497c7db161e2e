"""Redis restarted in the middle of a run: without persistence the queue is gone and `producer resume`
completes the run; with compose's persistence the run completes by itself. In those two the sweeper (which would
also send lost images again) is switched off, so each shows the one mechanism it is about. Messages taken and
lost, and Redis wiped whole (FLUSHALL): the window and the sweeper complete the run by themselves."""

from __future__ import annotations

import json
import re

import redis
from sqlalchemy import func, select

from benchmarks.services import RedisServer
from db.models import Explanation, Run
from tests.faults.figures import (
    IMAGES, MIDWAY, Holds, assert_nothing_lost_or_doubled, enqueue_run, report, sent_again_by_sweeper,
)
from tests.stack import Stack
from tests.waiting import broker_idle, wait_until
from worker.messages import EXPLAIN_TASK

SWEEPER_OFF = {"SWEEP_INTERVAL_S": "3600"}


def restart_midway(server: RedisServer, stack_on, name: str) -> tuple[Stack, int]:
    """A worker (without the sweeper) and a run on `server`, restarted with SIGTERM, as `docker compose
    restart redis` does, while the image at position 12 is being explained (held: the run cannot end first)."""
    faults = stack_on(server.url)
    faults.env.update(SWEEPER_OFF)
    run_id = enqueue_run(faults, name)
    holds = Holds.once_at(faults, run_id, (MIDWAY,))
    faults.start_worker()
    image_id, delivery, _ = holds.next()
    server.restart()
    holds.release(image_id, delivery)
    return faults, run_id


def running(stack: Stack, run_id: int) -> int:
    with stack.session() as session:
        return session.scalar(select(func.count()).select_from(Explanation).where(
            Explanation.run_id == run_id, Explanation.status == "running"))


def test_redis_restarted_without_persistence_then_resume_completes_the_run(redis_server, stack_on):
    faults, run_id = restart_midway(redis_server, stack_on, "redis-forgot")  # nothing on disk: the queue is gone
    # The tasks that were running finish; then nothing more can come: no image is being explained and the broker
    # (restarted empty) holds nothing to deliver.
    wait_until(lambda: broker_idle(redis_server.url) and not running(faults, run_id), "the run stalled", timeout=60)
    stalled_at = faults.counts(run_id).finished
    assert stalled_at < IMAGES  # the run is stuck without its queue
    resumed = faults.cli("producer", "resume", str(run_id), "--wait").stdout
    sent_again = int(re.search(r"(\d+) images sent again", resumed).group(1))
    figures = report(faults, "Redis restarted without persistence, then resume", run_id, 1)
    print(f"finished when stuck: {stalled_at}; resume sent {sent_again} images again")
    assert_nothing_lost_or_doubled(figures)
    assert figures["ok"] == IMAGES and sent_again == IMAGES - stalled_at


def test_redis_restarted_with_composes_persistence_completes_the_run_by_itself(compose_redis, stack_on):
    faults, run_id = restart_midway(compose_redis, stack_on, "redis-kept")  # the append-only file keeps the queue
    at_restart = faults.counts(run_id).finished
    faults.wait_finished(run_id, IMAGES, timeout=300)
    figures = report(faults, "Redis (compose's AOF) restarted", run_id, 1)
    print(f"finished at the restart: {at_restart}; no resume, no resend")
    assert_nothing_lost_or_doubled(figures)
    assert figures["ok"] == IMAGES


def test_messages_taken_from_the_queue_and_lost_are_sent_again_by_the_sweeper(redis_server, stack_on):
    """Kombu pops a message, then records it as held: a worker killed in between loses it for good.
    Here the test pops five messages itself and drops them; the workers' sweeper sends them again."""
    faults = stack_on(redis_server.url)
    run_id = enqueue_run(faults, "taken-and-lost")
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
    figures = report(faults, "5 messages taken from the queue and lost", run_id, 5)
    resent = sent_again_by_sweeper(faults)
    print(f"the sweeper sent again: {resent}")
    assert_nothing_lost_or_doubled(figures)
    assert figures["ok"] == IMAGES and resent == 5


def test_redis_wiped_in_the_middle_of_a_run_loses_nothing_and_needs_no_resume(redis_server, stack_on):
    """FLUSHALL about 12 images in: the queued tasks, the workers' records and the queue's binding are gone. The
    window refills the queue from the database, and the sweeper sends again what the wipe took; the run finishes
    with nothing lost and nothing duplicated, without `producer resume`."""
    faults = stack_on(redis_server.url)
    faults.env.update({"MAX_QUEUED": "10"})  # the window: 10 of the 40 tasks in Redis at a time
    run_id = enqueue_run(faults, "redis-wiped")
    holds = Holds.once_at(faults, run_id, (MIDWAY,))
    faults.start_worker()
    image_id, delivery, _ = holds.next()  # the run cannot end before the wipe
    client = redis.Redis.from_url(redis_server.url)
    # the window refills as the workers drain it: wipe at a moment the queue holds tasks (it may be empty for an
    # instant between two refills)
    queued = wait_until(lambda: client.llen("celery"), "tasks in the queue", timeout=30, every=0.001)
    client.flushall()
    client.close()
    holds.release(image_id, delivery)
    assert faults.counts(run_id).finished < IMAGES, "the wipe came after the run had finished"
    faults.wait_finished(run_id, IMAGES, timeout=300)
    figures = report(faults, "Redis wiped (FLUSHALL), no resume", run_id, 1)
    resent = sent_again_by_sweeper(faults)
    print(f"tasks in the queue when wiped: {queued}; the sweeper sent again: {resent}")
    assert_nothing_lost_or_doubled(figures)
    assert figures["ok"] == IMAGES and 0 < queued <= 10
    with faults.session() as session:
        assert session.get(Run, run_id).status == "done"

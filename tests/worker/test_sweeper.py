"""The workers' records on a real Redis: a worker whose heartbeats stop is lost with the tasks it held and had not
finished; one that keeps beating, or stopped cleanly, is not."""

from __future__ import annotations

import redis

from core.settings import settings
from tests.services import redis_database, redis_url
from tests.waiting import wait_until
from worker.messages import CHECK_TASK, EXPLAIN_TASK
from worker.sweeper import (
    forget_worker, held_by_live_workers, held_key, lost_workers, record_heartbeat, task_done, task_taken,
)


def test_a_worker_whose_heartbeats_stop_is_lost_with_the_tasks_it_held(monkeypatch):
    monkeypatch.setattr(settings, "lost_worker_after_s", 3)  # a stall of 3 s before the first look would fail it
    with redis_database(redis_url(11)) as url:
        client = redis.Redis.from_url(url)
        for worker in ("dead@a/1", "gone@b/2", "busy@c/3"):
            record_heartbeat(client, worker)
        for image_id in (10, 11, 12):
            task_taken(client, "dead@a/1", held_key(EXPLAIN_TASK, [1, image_id]))
        task_done(client, "dead@a/1", held_key(EXPLAIN_TASK, [1, 11]))  # finished before the worker died
        task_taken(client, "dead@a/1", held_key(CHECK_TASK, [1, [10, 12]]))  # an input check, running
        task_taken(client, "gone@b/2", held_key(EXPLAIN_TASK, [1, 20]))
        forget_worker(client, "gone@b/2")  # stopped cleanly: its messages went back to the queue
        task_taken(client, "busy@c/3", held_key(EXPLAIN_TASK, [2, 30]))
        assert lost_workers(client) == {}  # within LOST_WORKER_AFTER_S of the last heartbeat

        def lost_while_the_other_beats():
            record_heartbeat(client, "busy@c/3")
            return lost_workers(client)

        lost = wait_until(lost_while_the_other_beats, "the silent worker declared lost", timeout=10, every=0.1)
        assert lost == {"dead@a/1": ["1:10", "1:12", "check:1"]}
        assert held_by_live_workers(client) == {"2:30"}
        forget_worker(client, "dead@a/1")  # recovered
        assert lost_workers(client) == {}
        client.close()

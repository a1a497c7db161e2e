"""The window: the database holds a run's images; the broker holds at most MAX_QUEUED image tasks at a time.

Every FEED_INTERVAL_S one worker's main process (one at a time, by a lock in Redis) tops the queue up: it counts the
messages waiting in the broker's queue and sends the free places' worth of images, each run's in its order, the
places shared equally among the runs with images waiting, so that several runs share the workers fairly. The
producer does the same once, as it finishes storing a run, so the first tasks go out at once. Before sending, the
sender moves the run's cursor in the database and records the images as queued, by a compare-and-set on the cursor
(two senders never send the same images); an image recorded and never sent (the broker went away in between) is
found by the sweep (worker.sweeper). So `enqueue` without `--wait` exits as soon as the images are stored, Redis
memory does not grow with the job, and a Redis that loses everything loses no image.
"""

from __future__ import annotations

import heapq
import time
from contextlib import contextmanager
from typing import Iterator

from celery import Celery

from core.settings import settings
from db import jobs
from worker.messages import send_explain_tasks

FEED_LOCK_KEY = "lime-batch:feed-lock"


def declare_task_queue(app: Celery) -> int:
    """Declare the tasks' queue with its exchange and binding, and return how many messages wait in it (those a worker
    has taken are not counted), on any kombu transport. Declared anew every time: a Redis that lost everything
    (FLUSHALL) lost the binding too, and kombu would drop every task sent to it as undeliverable."""
    with app.connection_or_acquire() as connection:  # the pool's: no new connection (and handshake) every second
        queue = app.amqp.queues[app.conf.task_default_queue](connection.default_channel)
        queue.declare()
        return queue.queue_declare().message_count


def fair_shares(free: int, waiting: list[int], in_flight: list[int]) -> list[int]:
    """`free` places split among runs with `waiting` images each so that their work in flight (sent, not finished)
    comes out as equal as the places allow: each place goes to the run with the least in flight (the oldest on a
    tie) that still has images waiting. Counting what is in flight, not only this call's places, keeps the split
    fair when the window frees one place at a time (a lone place would otherwise go to the oldest run every time)."""
    shares = [0] * len(waiting)
    levels = [(in_flight[i], i) for i, count in enumerate(waiting) if count > 0]  # a heap: O(free log runs)
    heapq.heapify(levels)
    for _ in range(free):
        if not levels:
            break
        level, i = heapq.heappop(levels)
        shares[i] += 1
        if shares[i] < waiting[i]:
            heapq.heappush(levels, (level + 1, i))
    return shares


def fill_window(app: Celery, session_factory, limit: int | None = None) -> int:
    """Top the queue up to `limit` (default MAX_QUEUED) image tasks from the runs with images waiting; how many
    were sent."""
    limit = settings.max_queued if limit is None else limit
    free = limit - declare_task_queue(app)
    if free <= 0:
        return 0
    sent = 0
    with session_factory() as session:
        waiting = jobs.runs_to_feed(session)
        shares = fair_shares(free, [run.stored - run.next_position for run in waiting],
                             [max(0, run.next_position - run.finished) for run in waiting])
        for run, share in zip(waiting, shares):
            if share == 0:
                continue
            image_ids = jobs.images_at(session, run.run_id, run.next_position, share)
            if not image_ids or not jobs.take_for_sending(session, run, image_ids):
                session.rollback()  # another sender moved this run's cursor first
                continue
            session.commit()
            send_explain_tasks(app, run.run_id, image_ids)
            sent += len(image_ids)
    return sent


@contextmanager
def feed_lock(client, wait_s: float = 0.0) -> Iterator[bool]:
    """Whether this process holds the one sender's lock (always, without a Redis client: the embedded broker has
    one local worker); waits up to `wait_s` for it."""
    if client is None:
        yield True
        return
    token = f"{time.time()}"
    deadline = time.monotonic() + wait_s
    expiry_s = max(2, int(2 * settings.feed_interval_s) + 1)  # a sender that died lets go within two intervals
    held = bool(client.set(FEED_LOCK_KEY, token, nx=True, ex=expiry_s))
    while not held and time.monotonic() < deadline:
        time.sleep(0.05)
        held = bool(client.set(FEED_LOCK_KEY, token, nx=True, ex=expiry_s))
    try:
        yield held
    finally:
        if held and client.get(FEED_LOCK_KEY) == token.encode():
            client.delete(FEED_LOCK_KEY)

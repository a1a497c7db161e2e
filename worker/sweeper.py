"""Send again the images whose task the broker lost.

Kombu's Redis transport pops a message from the queue and only then records it as unacknowledged: a
worker that dies between the two (a machine lost, a SIGKILL) loses that message for good, and no
visibility timeout brings it back. Results live in SQL, so the loss shows there: once the queue is
empty, an unfinished image of a running run whose task no worker holds was lost. Every worker's main
process looks every SWEEP_INTERVAL_S (one worker per interval, by a Redis lock) and sends those images
again. A needless resend is harmless: the claim turns a second delivery of a finished image into a no-op.
"""

from __future__ import annotations

import base64
import json
import logging
import socket

import redis
from celery import Celery, bootsteps

from core.settings import is_redis_url, settings
from worker.messages import EXPLAIN_TASK, send_explain_tasks

logger = logging.getLogger(__name__)

# Kombu's Redis transport keeps messages taken by a worker, not yet acknowledged, in this hash.
UNACKED_KEY = "unacked"
SWEEP_LOCK_KEY = "lime-batch:sweep-lock"


def tasks_held(client: redis.Redis, queue: str, task_name: str) -> set[tuple[int, ...]] | None:
    """The args of every `task_name` message that a worker holds; None while `queue` still has messages
    (a task waiting there is neither held nor lost)."""
    if client.llen(queue):
        return None
    held = set()
    for raw in client.hvals(UNACKED_KEY):
        message, _exchange, _routing_key = json.loads(raw)
        if message["headers"].get("task") != task_name:
            continue
        body = message["body"]
        if message["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args, _kwargs, _embed = json.loads(body)
        held.add(tuple(args))
    return held


def sweep(app: Celery, client: redis.Redis) -> int:
    """Send again every lost image (see the module's text); returns how many were sent."""
    from db import jobs
    from db.session import session_factory

    if not client.set(SWEEP_LOCK_KEY, socket.gethostname(), nx=True, ex=max(1, settings.sweep_interval_s - 1)):
        return 0  # another worker swept in this interval
    held = tasks_held(client, app.conf.task_default_queue, EXPLAIN_TASK)
    if held is None:
        return 0
    with session_factory()() as session:
        lost = [job for job in jobs.unfinished_images_of_running_runs(session) if job not in held]
    by_run: dict[int, list[int]] = {}
    for run_id, image_id in lost:
        by_run.setdefault(run_id, []).append(image_id)
    for run_id, image_ids in by_run.items():
        logger.warning("run %s: %d image(s) lost by the broker, sent again", run_id, len(image_ids))
        send_explain_tasks(app, run_id, image_ids)
    return len(lost)


class Sweeper(bootsteps.StartStopStep):
    """Runs `sweep` on the worker's timer, in its main process (which never loads TensorFlow)."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **_):
        self.tref = None
        self.client: redis.Redis | None = None

    def start(self, worker) -> None:
        broker_url = worker.app.conf.broker_url
        if not is_redis_url(broker_url):
            return  # it reads Redis; a message lost by the embedded broker needs `producer local --resume`
        self.client = redis.Redis.from_url(broker_url, socket_timeout=10)
        self.tref = worker.timer.call_repeatedly(settings.sweep_interval_s, self._tick, (worker.app,), priority=10)

    def _tick(self, app: Celery) -> None:
        try:
            sweep(app, self.client)
        except Exception:  # a database or broker outage: look again next time
            logger.exception("looking for lost tasks failed")

    def stop(self, worker) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        if self.client is not None:
            self.client.close()

"""Send again the images whose task was lost: with a whole worker (a machine lost), or by the broker.

**Lost workers.** A worker that dies whole (a VM reclaimed, a container OOM-killed) leaves the tasks it held
unacknowledged in Redis, and Redis hands them out again only after its visibility timeout (an hour in
production, as it must outlast the longest task). So each worker keeps a record in Redis: on each of Celery's
own heartbeats (the event Flower reads, every 2 s from the worker's main process, whatever its children are
doing) it refreshes `lime-batch:alive:<worker>`, which expires after LOST_WORKER_AFTER_S; its main process adds
each image task it receives to the set `lime-batch:held:<worker>`, and the child that ran it removes it when the
task ends. A worker listed in `lime-batch:workers` whose alive key expired sent no heartbeat for that long: it is
lost, and the unfinished images it held are sent again, whether or not the queue is empty. Redis' own clock
expires the key, so the machines' clocks do not matter. A worker that stops cleanly removes its record (its
messages go back to the queue as it disconnects). A worker that is only slow keeps sending heartbeats and is
never declared lost; one that sends none (`--without-heartbeat`) is never recorded, and its tasks wait for the
visibility timeout as before.

**Messages lost by the broker.** Kombu's Redis transport pops a message from the queue and only then records it as
unacknowledged: a worker that dies between the two loses that message for good, and no visibility timeout brings
it back. Results live in SQL, so the loss shows there: once the queue is empty, an unfinished image of a running
run whose task no worker holds was lost.

Every worker's main process looks every SWEEP_INTERVAL_S (one worker per interval, by a Redis lock). A needless
resend is harmless: the claim turns a second delivery of a finished image into a no-op.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import uuid

import redis
from celery import Celery, bootsteps
from celery.signals import heartbeat_sent, task_postrun, task_received

from core.settings import is_redis_url, settings
from worker.messages import EXPLAIN_TASK, send_explain_tasks

logger = logging.getLogger(__name__)

# Kombu's Redis transport keeps messages taken by a worker, not yet acknowledged, in this hash.
UNACKED_KEY = "unacked"
SWEEP_LOCK_KEY = "lime-batch:sweep-lock"
WORKERS_KEY = "lime-batch:workers"  # every worker that sent a heartbeat and did not stop cleanly
HELD_PREFIX = "lime-batch:held:"  # + worker: "run:image" of every image task it received and has not finished
ALIVE_PREFIX = "lime-batch:alive:"  # + worker: exists while the worker sends heartbeats
# Made once in the worker's main process, at import, before it forks: its children share it. A worker restarted
# under the same node name (a container's hostname) is another instance, so it cannot take over the record of the
# one that died.
WORKER_INSTANCE = uuid.uuid4().hex[:8]


def this_worker(nodename: str) -> str:
    """The name this worker's records go by: node name and instance (`test-1@host/3fa2b1c9`)."""
    return f"{nodename}/{WORKER_INSTANCE}"


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


def record_heartbeat(client: redis.Redis, worker: str) -> None:
    """The worker is alive for LOST_WORKER_AFTER_S more seconds."""
    with client.pipeline() as pipe:
        pipe.set(ALIVE_PREFIX + worker, 1, ex=settings.lost_worker_after_s)
        pipe.sadd(WORKERS_KEY, worker)
        pipe.execute()


def task_taken(client: redis.Redis, worker: str, run_id: int, image_id: int) -> None:
    client.sadd(HELD_PREFIX + worker, f"{run_id}:{image_id}")


def task_done(client: redis.Redis, worker: str, run_id: int, image_id: int) -> None:
    client.srem(HELD_PREFIX + worker, f"{run_id}:{image_id}")


def forget_worker(client: redis.Redis, worker: str) -> None:
    """A worker that stops cleanly (or was recovered): nothing of it is left to recover."""
    with client.pipeline() as pipe:
        pipe.delete(ALIVE_PREFIX + worker, HELD_PREFIX + worker)
        pipe.srem(WORKERS_KEY, worker)
        pipe.execute()


def lost_workers(client: redis.Redis) -> dict[str, list[tuple[int, int]]]:
    """Every recorded worker whose heartbeat stopped LOST_WORKER_AFTER_S ago or more, with the tasks it held."""
    lost = {}
    for name in sorted(member.decode() for member in client.smembers(WORKERS_KEY)):
        if not client.exists(ALIVE_PREFIX + name):
            held = (member.decode().split(":") for member in client.smembers(HELD_PREFIX + name))
            lost[name] = sorted((int(run_id), int(image_id)) for run_id, image_id in held)
    return lost


def recover_lost_workers(app: Celery, client: redis.Redis) -> int:
    """Send again the unfinished images that lost workers held; returns how many were sent."""
    from db import jobs
    from db.session import session_factory

    lost = lost_workers(client)
    if not lost:
        return 0
    with session_factory()() as session:
        unfinished = set(jobs.unfinished_images_of_running_runs(session))
    sent = 0
    for worker, held in lost.items():
        again = _by_run([task for task in held if task in unfinished])
        for run_id, image_ids in again.items():
            send_explain_tasks(app, run_id, image_ids)
        count = sum(len(image_ids) for image_ids in again.values())
        logger.warning(
            "worker %s lost (no heartbeat for %d s): %d of the %d task(s) it held sent again%s",
            worker, settings.lost_worker_after_s, count, len(held),
            "".join(f"; run {run_id}: images {image_ids}" for run_id, image_ids in again.items()),
        )
        forget_worker(client, worker)
        sent += count
    return sent


def sweep(app: Celery, client: redis.Redis) -> int:
    """Send again every image lost by the broker (see the module's text); returns how many were sent."""
    from db import jobs
    from db.session import session_factory

    held = tasks_held(client, app.conf.task_default_queue, EXPLAIN_TASK)
    if held is None:
        return 0
    with session_factory()() as session:
        lost = [job for job in jobs.unfinished_images_of_running_runs(session) if job not in held]
    for run_id, image_ids in _by_run(lost).items():
        logger.warning("run %s: %d image(s) lost by the broker, sent again", run_id, len(image_ids))
        send_explain_tasks(app, run_id, image_ids)
    return len(lost)


def _by_run(tasks: list[tuple[int, int]]) -> dict[int, list[int]]:
    by_run: dict[int, list[int]] = {}
    for run_id, image_id in tasks:
        by_run.setdefault(run_id, []).append(image_id)
    return by_run


class Sweeper(bootsteps.StartStopStep):
    """Records this worker's heartbeats and runs the sweep on the worker's timer, in its main process (which never
    loads TensorFlow)."""

    requires = {"celery.worker.components:Timer"}
    current: "Sweeper | None" = None  # the one of this process, for the heartbeat signal

    def __init__(self, worker, **_):
        self.tref = None
        self.client: redis.Redis | None = None
        self.name = ""
        self.recorded = False  # after its first heartbeat: a worker without heartbeats is never recorded

    def start(self, worker) -> None:
        broker_url = worker.app.conf.broker_url
        if not is_redis_url(broker_url):
            return  # it reads Redis; a task lost by the embedded broker needs `producer local --resume`
        self.client = redis.Redis.from_url(broker_url, socket_timeout=10)
        self.name = this_worker(worker.hostname)
        Sweeper.current = self
        self.tref = worker.timer.call_repeatedly(settings.sweep_interval_s, self._tick, (worker.app,), priority=10)

    def heartbeat(self) -> None:
        try:
            record_heartbeat(self.client, self.name)
            self.recorded = True
        except redis.RedisError:  # the broker is away: the worker is reconnecting, the next heartbeat records it
            logger.debug("recording the heartbeat failed", exc_info=True)

    def received(self, run_id: int, image_id: int) -> None:
        if self.recorded:
            try:
                task_taken(self.client, self.name, run_id, image_id)
            except redis.RedisError:  # as above; this one task waits for the visibility timeout if the worker dies
                logger.debug("recording a received task failed", exc_info=True)

    def _tick(self, app: Celery) -> None:
        try:
            if not self.client.set(SWEEP_LOCK_KEY, socket.gethostname(), nx=True, ex=max(1, settings.sweep_interval_s - 1)):
                return  # another worker swept in this interval
            recover_lost_workers(app, self.client)
            sweep(app, self.client)
        except Exception:  # a database or broker outage: look again next time
            logger.exception("looking for lost tasks failed")

    def stop(self, worker) -> None:
        """A clean stop (warm or cold): the worker's unacknowledged messages go back to the queue as its connection
        closes, so its record goes, and it is never recovered as lost."""
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        Sweeper.current = None
        if self.client is not None:
            try:
                forget_worker(self.client, self.name)
            except redis.RedisError:
                logger.warning("could not remove this worker's record; it will be recovered as lost, harmlessly")
            self.client.close()
            self.client = None

    terminate = stop


@heartbeat_sent.connect
def _on_heartbeat(**_) -> None:
    """Celery's heartbeat (its timer, in the main process): connected at import, before the worker's Heart starts,
    which only calls the signal when it had receivers then."""
    if Sweeper.current is not None and Sweeper.current.client is not None:
        Sweeper.current.heartbeat()


@task_received.connect
def _on_task_received(request=None, **_) -> None:
    """In the main process, as a message becomes a request (reserved, not yet running)."""
    if request.name == EXPLAIN_TASK and Sweeper.current is not None and Sweeper.current.client is not None:
        Sweeper.current.received(*request.args)


_child_client: redis.Redis | None = None  # made in each child on first use, after the fork


@task_postrun.connect
def _on_task_postrun(sender=None, args=None, **_) -> None:
    """In the child that ran it, whatever the outcome (a retry is a new message, received anew)."""
    global _child_client
    if sender is None or sender.name != EXPLAIN_TASK or not is_redis_url(sender.app.conf.broker_url):
        return
    try:
        if _child_client is None:
            _child_client = redis.Redis.from_url(sender.app.conf.broker_url, socket_timeout=10)
        task_done(_child_client, this_worker(sender.request.hostname), *args)
    except redis.RedisError:  # left in the set: harmless, recovery sends only unfinished images
        logger.debug("recording a finished task failed", exc_info=True)

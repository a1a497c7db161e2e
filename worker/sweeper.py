"""What each worker's main process does besides running tasks: keep the broker's window full (worker.window), and
send again the images whose task was lost, with a whole worker (a machine lost) or by the broker.

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
it back; a Redis restarted without its data, or wiped, loses them all. Results live in SQL, so the loss shows there:
an image the window sent (a "queued" or "running" row, found through a partial index: at most the window and the
running tasks) whose task is neither in the queue nor taken by a worker (the queue is bounded by the window, so it
is read whole) was lost; so was the input check of a run that has none, when no queue, worker or record holds it.

Every worker's main process looks every SWEEP_INTERVAL_S (one worker per interval, by a Redis lock). A needless
resend is harmless: the claim turns a second delivery of a finished image into a no-op, and a second input check
writes the same figures.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import uuid

from datetime import timedelta

import redis
from celery import Celery, bootsteps
from celery.signals import heartbeat_sent, task_postrun, task_received

from core.settings import is_redis_url, redis_client, settings
from worker.messages import CHECK_TASK, EXPLAIN_TASK, send_explain_tasks, send_input_check_again

logger = logging.getLogger(__name__)

# Kombu's Redis transport keeps messages taken by a worker, not yet acknowledged, in this hash.
UNACKED_KEY = "unacked"
SWEEP_LOCK_KEY = "lime-batch:sweep-lock"
WORKERS_KEY = "lime-batch:workers"  # every worker that sent a heartbeat and did not stop cleanly
HELD_PREFIX = "lime-batch:held:"  # + worker: "run:image" (and "check:run") of every task it received, unfinished
ALIVE_PREFIX = "lime-batch:alive:"  # + worker: exists while the worker sends heartbeats
QUEUE_PAGE = 100
# A row recorded as queued this recently may be on its way to the broker's lists: not yet taken for lost.
SENT_GRACE_S = 10
# Made once in the worker's main process, at import, before it forks: its children share it. A worker restarted
# under the same node name (a container's hostname) is another instance, so it cannot take over the record of the
# one that died.
WORKER_INSTANCE = uuid.uuid4().hex[:8]


def this_worker(nodename: str) -> str:
    """The name this worker's records go by: node name and instance (`test-1@host/3fa2b1c9`)."""
    return f"{nodename}/{WORKER_INSTANCE}"


def tasks_in_broker(client: redis.Redis, queue: str) -> tuple[set[tuple[int, int]], set[int]]:
    """The (run, image) of every image task and the run of every input check that Redis holds: waiting in `queue`
    (bounded by the window, so read whole) or taken by a worker and not yet acknowledged."""
    images, checks = set(), set()
    messages = []
    for start in range(0, client.llen(queue), QUEUE_PAGE):  # in pages: Redis' reply buffers stay small
        messages += [json.loads(raw) for raw in client.lrange(queue, start, start + QUEUE_PAGE - 1)]
    messages += [json.loads(raw)[0] for raw in client.hvals(UNACKED_KEY)]  # [message, exchange, routing key]
    for message in messages:
        body = message["body"]
        if message["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args, _kwargs, _embed = json.loads(body)
        task = message["headers"].get("task")
        if task == EXPLAIN_TASK:
            images.add(tuple(args))
        elif task == CHECK_TASK:
            checks.add(args[0])
    return images, checks


def record_heartbeat(client: redis.Redis, worker: str) -> None:
    """The worker is alive for LOST_WORKER_AFTER_S more seconds."""
    with client.pipeline() as pipe:
        pipe.set(ALIVE_PREFIX + worker, 1, ex=settings.lost_worker_after_s)
        pipe.sadd(WORKERS_KEY, worker)
        pipe.execute()


def held_key(task: str, args) -> str | None:
    """How a held task is recorded: `run:image` for an image, `check:run` for an input check."""
    if task == EXPLAIN_TASK:
        return f"{args[0]}:{args[1]}"
    if task == CHECK_TASK:
        return f"check:{args[0]}"
    return None


def task_taken(client: redis.Redis, worker: str, key: str) -> None:
    client.sadd(HELD_PREFIX + worker, key)


def task_done(client: redis.Redis, worker: str, key: str) -> None:
    client.srem(HELD_PREFIX + worker, key)


def forget_worker(client: redis.Redis, worker: str) -> None:
    """A worker that stops cleanly (or was recovered): nothing of it is left to recover."""
    with client.pipeline() as pipe:
        pipe.delete(ALIVE_PREFIX + worker, HELD_PREFIX + worker)
        pipe.srem(WORKERS_KEY, worker)
        pipe.execute()


def lost_workers(client: redis.Redis) -> dict[str, list[str]]:
    """Every recorded worker whose heartbeat stopped LOST_WORKER_AFTER_S ago or more, with the tasks it held."""
    lost = {}
    for name in sorted(member.decode() for member in client.smembers(WORKERS_KEY)):
        if not client.exists(ALIVE_PREFIX + name):
            lost[name] = sorted(member.decode() for member in client.smembers(HELD_PREFIX + name))
    return lost


def held_by_live_workers(client: redis.Redis) -> set[str]:
    """What the workers still sending heartbeats hold (an input check runs unacknowledged: only this knows it)."""
    held = set()
    for name in (member.decode() for member in client.smembers(WORKERS_KEY)):
        if client.exists(ALIVE_PREFIX + name):
            held |= {member.decode() for member in client.smembers(HELD_PREFIX + name)}
    return held


def recover_lost_workers(app: Celery, client: redis.Redis) -> int:
    """Send again the unfinished images (and input checks) that lost workers held; returns how many were sent."""
    from db import jobs
    from db.session import session_factory

    lost = lost_workers(client)
    if not lost:
        return 0
    with session_factory()() as session:
        unfinished = set(jobs.sent_unfinished(session))
        unchecked = set(jobs.runs_without_input_check(session))
    sent = 0
    for worker, held in lost.items():
        images = [tuple(map(int, key.split(":"))) for key in held if not key.startswith("check:")]
        again = _by_run([task for task in images if task in unfinished])
        for run_id, image_ids in again.items():
            send_explain_tasks(app, run_id, image_ids)
        checks = [int(key.split(":")[1]) for key in held if key.startswith("check:")]
        for run_id in (run_id for run_id in checks if run_id in unchecked):
            _send_check_again(app, run_id)
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
    """Send again every image (and input check) lost by the broker (see the module's text); returns how many images
    were sent."""
    from db import jobs
    from db.models import utcnow
    from db.session import session_factory

    with session_factory()() as session:
        candidates = jobs.sent_unfinished(session, before=utcnow() - timedelta(seconds=SENT_GRACE_S))
        unchecked = jobs.runs_without_input_check(session)
    if not candidates and not unchecked:
        return 0
    from worker.window import declare_task_queue

    declare_task_queue(app)  # after a wipe, tasks sent again must find their queue
    images, checks = tasks_in_broker(client, app.conf.task_default_queue)
    held = held_by_live_workers(client)
    lost = [task for task in candidates if task not in images]
    for run_id, image_ids in _by_run(lost).items():
        logger.warning("run %s: %d image(s) lost by the broker, sent again", run_id, len(image_ids))
        send_explain_tasks(app, run_id, image_ids)
    for run_id in unchecked:
        if run_id not in checks and f"check:{run_id}" not in held:
            logger.warning("run %s: its input check was lost by the broker, sent again", run_id)
            _send_check_again(app, run_id)
    return len(lost)


def _send_check_again(app: Celery, run_id: int) -> None:
    from db.session import session_factory

    with session_factory()() as session:
        send_input_check_again(app, session, run_id)


def _by_run(tasks: list[tuple[int, int]]) -> dict[int, list[int]]:
    by_run: dict[int, list[int]] = {}
    for run_id, image_id in tasks:
        by_run.setdefault(run_id, []).append(image_id)
    return by_run


class Sweeper(bootsteps.StartStopStep):
    """In the worker's main process (which never loads TensorFlow), on the worker's timer: keeps the window full every
    FEED_INTERVAL_S, on any broker; with Redis, also records this worker's heartbeats and the tasks it holds, and
    sweeps for lost tasks every SWEEP_INTERVAL_S."""

    requires = {"celery.worker.components:Timer"}
    current: "Sweeper | None" = None  # the one of this process, for the heartbeat signal

    def __init__(self, worker, **_):
        self.trefs = []
        self.client: redis.Redis | None = None
        self.name = ""
        self.recorded = False  # after its first heartbeat: a worker without heartbeats is never recorded

    def start(self, worker) -> None:
        broker_url = worker.app.conf.broker_url
        self.trefs.append(worker.timer.call_repeatedly(settings.feed_interval_s, self._feed, (worker.app,), priority=10))
        if not is_redis_url(broker_url):
            return  # the rest reads Redis; a task lost by the embedded broker needs `producer local --resume`
        self.client = redis_client(broker_url, socket_timeout=10)
        self.name = this_worker(worker.hostname)
        Sweeper.current = self
        self.trefs.append(worker.timer.call_repeatedly(settings.sweep_interval_s, self._tick, (worker.app,), priority=10))

    def heartbeat(self) -> None:
        try:
            record_heartbeat(self.client, self.name)
            self.recorded = True
        except redis.RedisError:  # the broker is away: the worker is reconnecting, the next heartbeat records it
            logger.debug("recording the heartbeat failed", exc_info=True)

    def received(self, key: str) -> None:
        if self.recorded:
            try:
                task_taken(self.client, self.name, key)
            except redis.RedisError:  # as above; this one task waits for the visibility timeout if the worker dies
                logger.debug("recording a received task failed", exc_info=True)

    def _feed(self, app: Celery) -> None:
        from db.session import session_factory
        from worker.window import feed_lock, fill_window

        try:
            with feed_lock(self.client) as held:
                if held:
                    fill_window(app, session_factory())
        except Exception:  # a database or broker outage: try again next time
            logger.exception("filling the broker's window failed")

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
        for tref in self.trefs:
            tref.cancel()
        self.trefs = []
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
    key = held_key(request.name, request.args)
    if key is not None and Sweeper.current is not None and Sweeper.current.client is not None:
        Sweeper.current.received(key)


_child_client: redis.Redis | None = None  # made in each child on first use, after the fork


@task_postrun.connect
def _on_task_postrun(sender=None, args=None, **_) -> None:
    """In the child that ran it, whatever the outcome (a retry is a new message, received anew)."""
    global _child_client
    key = None if sender is None else held_key(sender.name, args)
    if key is None or not is_redis_url(sender.app.conf.broker_url):
        return
    try:
        if _child_client is None:
            _child_client = redis_client(sender.app.conf.broker_url, socket_timeout=10)
        task_done(_child_client, this_worker(sender.request.hostname), key)
    except redis.RedisError:  # left in the set: harmless, recovery sends only unfinished work
        logger.debug("recording a finished task failed", exc_info=True)

"""The one Celery app. `celery -A worker worker` finds it here.

Nothing in this module (or in worker.tasks at import) touches TensorFlow: the worker's parent
process forks its children, and TensorFlow hangs after a fork. Each child sets its own thread
count and loads its models lazily, after the fork.
"""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_process_init

from core.settings import is_redis_url, settings
from worker import local_broker
from worker.sweeper import Sweeper

def use_broker(celery_app: Celery, url: str) -> None:
    """Point the app at a broker; only Redis takes a visibility timeout (the embedded SQLAlchemy
    transport would pass it on to create_engine and fail)."""
    celery_app.close()  # the pooled connections to the broker it pointed at before
    celery_app.conf.broker_url = url
    celery_app.conf.broker_transport_options = {
        "visibility_timeout": settings.visibility_timeout_s,
        # Workers look for messages whose worker died (unacknowledged past the visibility timeout)
        # every tenth of the timeout, at most every 10 s; kombu's default looks every 100 s.
        "unacked_restore_interval": max(1, min(10, settings.visibility_timeout_s // 10)),
        "unacked_restore_throttle": 1,
    } if is_redis_url(url) else {}


local_broker.register()
app = Celery("worker", include=["worker.tasks"])
use_broker(app, settings.celery_broker_url)
app.conf.update(
    broker_connection_retry_on_startup=True,
    # JSON only: a pickled message is refused, never deserialised.
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    task_ignore_result=True,  # results live in SQL
    # A task is acknowledged after it finished; a task whose worker died goes back to the queue.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # A task killed at the hard time limit goes back to the queue too (Celery would acknowledge it and
    # leave its image unfinished); the claim counts the attempt, so a hang ends as failed after MAX_ATTEMPTS.
    task_acks_on_timeout=False,
    worker_prefetch_multiplier=1,
    task_soft_time_limit=settings.task_soft_time_limit_s,
    task_time_limit=settings.task_time_limit_s,
    # Flower needs the events.
    worker_send_task_events=True,
    task_send_sent_event=True,
    worker_concurrency=settings.worker_processes(),
    # A fresh child imports TensorFlow before it reports ready, which takes longer than Celery's 4 s
    # when its siblings keep the cores busy; the master would kill it and fork another, forever.
    worker_proc_alive_timeout=60,
)
app.steps["worker"].add(Sweeper)


_thread_limits = None


@worker_process_init.connect
def _init_child_process(**_) -> None:
    """In each freshly forked child: drop the parent's database connections, pin TensorFlow's and
    BLAS's threads to cores / processes so the children do not fight over the cores."""
    global _thread_limits
    from threadpoolctl import threadpool_limits

    from db.session import dispose_engines
    from models.classifier import configure_tensorflow

    dispose_engines()
    threads = settings.threads_per_process()
    _thread_limits = threadpool_limits(threads)
    configure_tensorflow(threads)

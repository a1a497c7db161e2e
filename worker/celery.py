"""The one Celery app. `celery -A worker worker` finds it here.

Nothing in this module (or in worker.tasks at import) touches TensorFlow: the worker's parent
process forks its children, and TensorFlow hangs after a fork. Each child sets its own thread
count and loads its models lazily, after the fork.
"""

from __future__ import annotations

import logging

from celery import Celery
from celery.signals import worker_init, worker_process_init

from core.settings import is_redis_url, redis_tls, settings
from db.session import one_connection_per_process
from worker import local_broker
from worker.sweeper import Sweeper

def use_broker(celery_app: Celery, url: str) -> None:
    """Point the app at a broker; only Redis takes a visibility timeout (the embedded SQLAlchemy
    transport would pass it on to create_engine and fail), and rediss:// its TLS options (the broker's
    certificate checked: without them kombu would connect without checking it)."""
    celery_app.close()  # the pooled connections to the broker it pointed at before
    celery_app.conf.broker_url = url
    celery_app.conf.broker_use_ssl = redis_tls(url) or None
    celery_app.conf.broker_transport_options = {
        "visibility_timeout": settings.visibility_timeout_s,
        # Workers look for messages whose worker died (unacknowledged past the visibility timeout)
        # every tenth of the timeout, at most every 10 s; kombu's default looks every 100 s.
        "unacked_restore_interval": max(1, min(10, settings.visibility_timeout_s // 10)),
        "unacked_restore_throttle": 1,
    } if is_redis_url(url) else {}


logger = logging.getLogger(__name__)

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


@worker_init.connect
def _init_worker(**_) -> None:
    """In a worker's main process, before it forks: one database connection per process, there (window, sweep) and
    in each child (the setting is inherited); and no start at all on a connection whose certificate fails."""
    one_connection_per_process()
    refuse_untrusted_peers(app)


def refuse_untrusted_peers(celery_app: Celery) -> None:
    """A worker given the wrong CA (or a server whose certificate does not name it) exits at once, saying which
    connection and why, instead of retrying forever; any other failure to connect is left to the usual retries (a
    database still starting)."""
    from kombu.utils.url import maybe_sanitize_url
    from sqlalchemy import text

    from db.session import get_engine

    problems = []
    if redis_tls(celery_app.conf.broker_url):  # only a TLS broker has a certificate to fail
        try:
            with celery_app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=10)
        except Exception as error:
            if reason := certificate_problem(error):
                problems.append(f"the broker at {maybe_sanitize_url(celery_app.conf.broker_url)}: {reason} "
                                "(BROKER_CA_CERTS names the CA that signed the broker's certificate)")
    try:
        with get_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:
        if reason := certificate_problem(error):
            problems.append(f"the database at {get_engine().url.render_as_string(hide_password=True)}: {reason} "
                            "(sslrootcert in DATABASE_URL names the CA that signed the server's certificate)")
    if problems:
        for problem in problems:
            logger.critical("refusing to start: cannot trust %s", problem)
        raise SystemExit(78)  # EX_CONFIG: the configuration is wrong, retrying cannot help


def certificate_problem(error: BaseException) -> str | None:
    """The TLS certificate check that failed, in one line, if that is what `error` (or its causes) is."""
    import ssl

    cause = error
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {cause.verify_message or cause.reason}"
        message = str(cause)
        if any(sign in message for sign in ("certificate verify failed", "does not match host name", "root certificate")):
            return next(line for line in message.splitlines() if line.strip()).strip()
        cause = cause.__cause__ or cause.__context__
    return None


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

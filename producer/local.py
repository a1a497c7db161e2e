"""The local workers of `python -m producer local`: a real `celery -A worker worker` subprocess (prefork), on the
embedded broker or on CELERY_BROKER_URL. The tests start their workers with it too."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parent.parent


class Worker:
    """A real `celery -A worker worker` (prefork) subprocess."""

    def __init__(self, env: dict[str, str], concurrency: int = 2, log: Path | None = None, name: str | None = None,
                 include: tuple[str, ...] = ()):
        self.env = env
        self.include = include  # more modules for the worker to import (celery's --include)
        self.concurrency = concurrency
        self.name = name or f"test-{uuid.uuid4().hex[:6]}@%h"
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self, ready_timeout: float | None = 120) -> "Worker":
        """Start the worker; wait until it answers a ping unless ready_timeout is None (brokers
        without broadcast, such as the embedded SQLAlchemy transport, cannot be pinged)."""
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker", "worker", "--pool", "prefork",
             "--concurrency", str(self.concurrency), "--loglevel", "INFO", "-n", self.name, "--without-gossip",
             "--without-mingle", *(("--include", ",".join(self.include)) if self.include else ())],
            cwd=REPO, env={**os.environ, **self.env}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        if ready_timeout is not None:
            self.wait_ready(ready_timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        """Until this worker answers a ping through the broker (another worker on the same broker answering says
        nothing about this one)."""
        from celery import Celery

        probe = Celery(broker=self.env["CELERY_BROKER_URL"])
        me = self.name.replace("%h", socket.gethostname())
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"worker exited with {self.process.returncode}; see {self.log}")
                if probe.control.ping(destination=[me], timeout=1.0):
                    return
            raise TimeoutError("worker did not answer a ping in time")
        finally:
            probe.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def child_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def stop(self, timeout: float = 60) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # warm shutdown: finish running tasks
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the main process and its children at once, as when a machine dies."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@contextmanager
def local_workers(processes: int) -> Iterator[tuple[object, Worker]]:
    """The Celery app pointed at the local broker (CELERY_BROKER_URL when it is set, else an embedded broker in a
    SQLite file under DATA_DIR) and `processes` worker processes on it, stopped on the way out, Ctrl-C included.
    With prepare_run, enqueue or resume and wait_for_run (producer.service) this is `producer local` whole."""
    from core.settings import settings
    from worker import local_broker
    from worker.celery import app, use_broker

    broker = settings.celery_broker_url
    if "celery_broker_url" not in settings.model_fields_set:
        broker = local_broker.url_for((settings.data_dir / "broker.db").resolve())
    use_broker(app, broker)
    env = {
        "DATABASE_URL": settings.database, "CELERY_BROKER_URL": broker, "DATA_DIR": str(settings.data_dir.resolve()),
        "WORKER_CONCURRENCY": str(processes),
    }
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    worker = Worker(env, concurrency=processes, log=settings.data_dir / "local-worker.log", name="local@%h")
    worker.start(ready_timeout=None)  # the embedded broker cannot be pinged: the first task waits for the workers
    try:
        yield app, worker
    finally:
        worker.stop()

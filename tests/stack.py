"""The one stack the tests run workers on: a migrated database, a broker, real `celery worker` processes and the
CLIs pointed at them. The pipeline tests share one per database backend; each fault test makes its own."""

from __future__ import annotations

import re
import time
from contextlib import ExitStack, contextmanager
from functools import cached_property
from pathlib import Path
from typing import Iterator

import pytest
from celery import Celery
from sqlalchemy.orm import sessionmaker

from benchmarks.services import run_id_of  # noqa: F401 (the tests read `enqueue` as the benchmarks do)
from db import reads
from db.session import make_engine
from producer.local import Worker
from tests.conftest import run_cli
from tests.services import postgres_database
from tests.waiting import wait_for_run


def on_backend(name: str):
    """For a pipeline test where the database is not the point (the broker, Flower, files, options): the shared
    stack of that one backend ("sqlite" or "postgresql"), not both; what SQL does runs on both."""
    return pytest.mark.parametrize("stack", [name], indirect=True)


def flat(output: str) -> str:
    """A command's output as words, a table's borders gone: what a wrapped cell says, whole."""
    return " ".join(re.sub("[│┌┐└┘├┤┬┴┼─]", " ", output).split())


class Stack:
    def __init__(
        self, tmp: Path, model: Path, database_url: str, broker_url: str, *,
        settings: dict[str, str] | None = None, run_options: tuple[str, ...] = ("--num-samples", "200"),
        worker_include: tuple[str, ...] = (),
    ):
        self.tmp = tmp
        self.worker_include = worker_include  # modules the workers import too (celery's --include)
        self.model = model
        self.run_options = run_options  # what every `enqueue` of this stack adds to the model
        self.database_url = database_url
        self.env = {**(settings or {}), "DATABASE_URL": database_url, "CELERY_BROKER_URL": broker_url,
                    "DATA_DIR": str(tmp / "data")}
        run_cli("db", "upgrade", env=self.env)
        self.engine = make_engine(database_url)
        self.session = sessionmaker(self.engine, expire_on_commit=False)
        self.workers: list[Worker] = []
        self.enqueued_at = 0.0

    @property
    def worker(self) -> Worker:
        """The worker started last."""
        return self.workers[-1]

    def start_worker(self, concurrency: int = 2) -> Worker:
        worker = Worker(self.env, concurrency=concurrency, log=self.tmp / f"worker-{len(self.workers)}.log",
                        include=self.worker_include).start()
        self.workers.append(worker)
        return worker

    def retire(self, worker: Worker) -> None:
        """Stop one of the stack's workers and forget it (`worker` is again the one started before it)."""
        worker.stop(timeout=30)
        self.workers.remove(worker)

    @cached_property
    def celery(self) -> Celery:
        """A Celery app on the stack's broker, to send tasks or messages by hand."""
        return Celery(broker=self.env["CELERY_BROKER_URL"])

    def cli(self, package: str, *args: str, check: bool = True):
        return run_cli(package, *args, check=check, env=self.env)

    def enqueue(self, *args: str, check: bool = True):
        """`producer enqueue` of the stack's model with its run options; the run's clock starts here."""
        self.enqueued_at = time.monotonic()
        return self.cli("producer", "enqueue", "--model", str(self.model), *self.run_options, *args, check=check)

    def counts(self, run_id: int) -> reads.RunCounts:
        with self.session() as session:
            return reads.run_counts(session, run_id)

    def wait_finished(self, run_id: int, at_least: int | None = None, timeout: float = 240) -> reads.RunCounts:
        """Until every image of the run (or `at_least` of them) has a finished (ok or failed) result."""
        return wait_for_run(self.session, run_id, at_least, timeout)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop(timeout=30)
        if "celery" in self.__dict__:
            self.celery.close()
        self.engine.dispose()


@contextmanager
def stacks(tmp: Path, model: Path, **options) -> Iterator:
    """make(broker_url, database_url=None) -> a Stack (on a fresh PostgreSQL database when none is given); every
    stack made stops its workers, and its fresh database goes, on the way out."""
    with ExitStack() as cleanup:
        def make(broker_url: str, database_url: str | None = None) -> Stack:
            if database_url is None:
                database_url = cleanup.enter_context(postgres_database())
            stack = Stack(tmp, model, database_url, broker_url, **options)
            cleanup.callback(stack.close)
            return stack

        yield make

"""A whole stack per database backend: a migrated database, a Redis database, a 2-process celery worker."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy.orm import sessionmaker

from db.session import make_engine
from tests.conftest import run_cli
from producer.local import Worker
from tests.services import postgres_database, redis_database


@dataclass
class Stack:
    env: dict[str, str]
    database_url: str
    worker: Worker
    session: sessionmaker
    celery: Celery
    model: Path
    tmp: Path

    def cli(self, package: str, *args: str, check: bool = True):
        return run_cli(package, *args, check=check, env=self.env)

    def enqueue(self, *args: str, check: bool = True):
        return self.cli("producer", "enqueue", "--model", str(self.model), "--num-samples", "200", *args, check=check)

    def new_worker(self) -> Worker:
        self.worker = Worker(self.env, concurrency=2, log=self.tmp / "worker.log")
        return self.worker


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def stack(request, tmp_path_factory, rectangles_model):
    tmp = tmp_path_factory.mktemp(f"stack-{request.param}")
    with redis_database() as broker, _database(request.param, tmp) as database_url:
        env = {"DATABASE_URL": database_url, "CELERY_BROKER_URL": broker, "DATA_DIR": str(tmp / "data")}
        run_cli("db", "upgrade", env=env)
        engine = make_engine(database_url)
        celery = Celery(broker=broker)
        worker = Worker(env, concurrency=2, log=tmp / "worker.log").start()
        stack = Stack(env, database_url, worker, sessionmaker(engine, expire_on_commit=False), celery, rectangles_model, tmp)
        try:
            yield stack
        finally:
            stack.worker.stop()
            celery.close()
            engine.dispose()


def _database(kind: str, tmp: Path):
    if kind == "postgresql":
        return postgres_database()
    from contextlib import nullcontext

    return nullcontext(f"sqlite:///{tmp / 'results.db'}")


@pytest.fixture(scope="module")
def first(stack) -> tuple[int, object]:
    """A finished run of 12 demo images, made once per stack for the tests that read one: (run id, its output)."""
    from tests.pipeline.test_pipeline import run_id_of

    result = stack.enqueue("--dataset", "rectangles", "--limit", "12", "--name", "first", "--wait")
    return run_id_of(result.stdout), result

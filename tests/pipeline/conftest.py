"""One stack per database backend, shared by every pipeline test (of a pytest-xdist worker): a migrated database, a
Redis database and a 2-process celery worker."""

from __future__ import annotations

import pytest

from tests.services import redis_database, redis_url, xdist_worker_index
from tests.stack import Stack, run_id_of, stacks


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def stack(request, tmp_path_factory, rectangles_model) -> Stack:
    tmp = tmp_path_factory.mktemp(f"stack-{request.param}")
    # Redis databases 1 to 10, two per pytest-xdist worker (its SQLite and its PostgreSQL stack): each worker's
    # stacks have queues of their own
    database = 1 + 2 * xdist_worker_index() + (request.param == "postgresql")
    with redis_database(redis_url(database)) as broker, stacks(tmp, rectangles_model) as make:
        stack = make(broker, f"sqlite:///{tmp / 'results.db'}" if request.param == "sqlite" else None)
        stack.start_worker()
        yield stack


@pytest.fixture(scope="session")
def first(stack) -> tuple[int, object]:
    """A finished run of 12 demo images, made once per stack for the tests that read one: (run id, its output)."""
    result = stack.enqueue("--dataset", "rectangles", "--limit", "12", "--name", "first", "--wait")
    return run_id_of(result.stdout), result

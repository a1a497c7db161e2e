"""Fault tests: real Redis, PostgreSQL and `celery worker` processes, a run of 40 demo images each, and a
fault injected in the middle of it. Each test prints what it did and its figures; the session's summary
repeats them as one table (tests/suite_report.py).

Every test gets its own redis-server on a spare port (so it may stop or restart it) and a fresh
database; the machine's shared services are never stopped.
"""

from __future__ import annotations

import pytest

from benchmarks.services import RedisServer
from tests.deploy import compose
from tests.faults.figures import FAULT_SETTINGS, table
from tests.stack import stacks


@pytest.fixture
def redis_server(tmp_path):
    """A redis-server of this test's own that keeps nothing on disk."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def compose_redis(tmp_path):
    """A redis-server of this test's own, started with docker-compose.yml's options (password, append-only file)."""
    password = "fault-test-secret"
    command = compose.service("redis", {"REDIS_PASSWORD": password})["command"]
    assert command[0] == "redis-server"
    server = RedisServer(tmp_path / "redis-compose", *command[1:], password=password).start()
    yield server
    server.stop()


@pytest.fixture
def stack_on(tmp_path, rectangles_model):
    """make(broker_url, database_url=None) -> a Stack with the fault settings, running the article's cheap settings
    (the faults are the point here), its workers able to hold images mid-task (tests.faults.figures.Holds); by default
    on a fresh database on the shared PostgreSQL. Its workers stop and its database goes when the test ends. Request
    broker fixtures before this one, so that they outlive the workers."""
    with stacks(tmp_path, rectangles_model, settings=FAULT_SETTINGS, run_options=("--preset", "article"),
                worker_include=("tests.faults.held_images",)) as make:
        yield make


@pytest.fixture
def faults(redis_server, stack_on):
    """A stack on a fresh PostgreSQL database and this test's own Redis; the test starts its workers."""
    return stack_on(redis_server.url)


@pytest.fixture(autouse=True)
def _fault_rows(request):
    """The rows this test reported, on its teardown report: with pytest-xdist only reports reach the process that
    prints the session's fault table (tests.suite_report)."""
    before = len(table)
    yield
    request.node.user_properties.extend(("fault", row) for row in table[before:])

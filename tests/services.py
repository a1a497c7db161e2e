"""Real services for the tests and benchmarks: throwaway PostgreSQL and Redis databases (created, then dropped
or flushed) and, for the fault tests, redis-server and PostgreSQL instances of their own to stop and restart.
Reads the TEST_* variables; the product never imports it."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

import psycopg
import redis

from tests.waiting import wait_until

REPO = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN = os.environ.get("TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")  # a database number of our own


def spare_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def postgres_database(prefix: str = "limebatch_test"):
    """A fresh PostgreSQL database; yields its SQLAlchemy URL and drops it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def redis_database(url: str = REDIS_URL):
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


class RedisServer:
    """A redis-server of one's own on a spare port, to stop and restart: never the machine's shared one.

    `flags` are redis-server options, e.g. compose's ("--requirepass", "secret", "--appendonly", "yes");
    without any, it keeps nothing on disk.
    """

    def __init__(self, directory: Path, *flags: str, password: str | None = None):
        self.directory = directory
        self.flags = flags or ("--save", "", "--appendonly", "no")
        self.password = password
        self.port = spare_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "redis.log", "ab") as log:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                 *self.flags],
                stdout=log, stderr=subprocess.STDOUT,
            )
        client = redis.Redis.from_url(self.url)
        try:
            wait_until(lambda: client.ping(), f"redis-server on port {self.port}", timeout=30)
        except BaseException:
            self.stop()  # never leave a server behind that no fixture will stop
            raise
        finally:
            client.close()
        return self

    def stop(self) -> None:
        """SIGTERM, as `docker compose restart` sends: Redis writes its append-only file if it keeps one."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)

    def restart(self) -> None:
        self.stop()
        self.start()


class PostgresServer:
    """A PostgreSQL cluster of one's own (initdb in a temporary folder, a spare port), to stop and start:
    never the machine's shared one. Runs as the `postgres` user when we are root, as PostgreSQL insists."""

    def __init__(self):
        initdb = shutil.which("initdb") or max(glob.glob("/usr/lib/postgresql/*/bin/initdb"), default=None,
                                                key=lambda path: int(path.split("/")[4]))
        if initdb is None:
            raise FileNotFoundError("PostgreSQL's initdb is not installed (Debian package postgresql)")
        self.bin = Path(initdb).parent
        self.port = spare_port()
        self.directory = Path(tempfile.mkdtemp(prefix="lime-batch-pg-"))
        self.data = self.directory / "data"
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    @property
    def url(self) -> str:
        """SQLAlchemy URL of its `postgres` database (the whole cluster is throwaway)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*as_owner, str(self.bin / program), *args], check=True, capture_output=True)

    def start(self) -> "PostgresServer":
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.directory / "server.log"), "-w", "start",
            "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''",
        )
        return self

    def stop(self) -> None:
        """A fast shutdown: open connections are cut, as in a database restart."""
        self._run("pg_ctl", "-D", str(self.data), "-w", "-m", "fast", "stop")

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

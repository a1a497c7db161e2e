"""The benchmarks' throwaway services: a fresh PostgreSQL database (created, then dropped) and a redis-server of
one's own, with the waiting they need; and the run id in what `producer enqueue` printed. The tests start theirs
with these too (tests/services.py), so this module imports nothing of tests/ or pytest.

BENCHMARK_POSTGRES_ADMIN_URL: the server's admin database, where a throwaway one is created and dropped (the
default: the machine's own PostgreSQL as `postgres`). A benchmark's Redis, where it uses a shared one, is its own
module's setting (BENCHMARK_REDIS_URL in benchmarks/pipeline.py).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis

POSTGRES_ADMIN = os.environ.get("BENCHMARK_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def wait_until(condition, what: str, timeout: float = 120, every: float = 0.2):
    """Poll `condition` until it returns something true, and return that; connection errors count as not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if result := condition():
                return result
        except (OSError, redis.ConnectionError):  # requests' ConnectionError is an OSError too
            pass
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout} s")


def spare_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_id_of(output: str) -> int:
    """The run id in what `producer enqueue` printed."""
    return int(re.search(r"run (\d+):", output).group(1))


@contextmanager
def postgres_database(prefix: str = "limebatch_benchmark", admin: str = POSTGRES_ADMIN):
    """A fresh PostgreSQL database on the server of `admin` (a URL of its admin database); yields its SQLAlchemy URL
    and drops it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Certificates:
    """A certificate authority, and a server certificate it signed for 127.0.0.1 (and localhost)."""

    ca: Path
    cert: Path
    key: Path


class RedisServer:
    """A redis-server of one's own on a spare port, to stop and restart: never the machine's shared one.

    `flags` are redis-server options, e.g. compose's ("--requirepass", "secret", "--appendonly", "yes");
    without any, it keeps nothing on disk. With `tls`, it speaks TLS only (rediss://), with that certificate.
    """

    def __init__(self, directory: Path, *flags: str, password: str | None = None, tls: Certificates | None = None):
        self.directory = directory
        self.flags = flags or ("--save", "", "--appendonly", "no")
        self.password = password
        self.tls = tls
        self.port = spare_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        self.directory.mkdir(parents=True, exist_ok=True)
        ports = ["--port", str(self.port)]
        if self.tls:
            ports = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls.cert),
                     "--tls-key-file", str(self.tls.key), "--tls-ca-cert-file", str(self.tls.ca), "--tls-auth-clients", "no"]
        with open(self.directory / "redis.log", "ab") as log:
            self.process = subprocess.Popen(
                ["redis-server", *ports, "--bind", "127.0.0.1", "--dir", str(self.directory), *self.flags],
                stdout=log, stderr=subprocess.STDOUT,
            )
        client = redis.Redis.from_url(self.url, **({"ssl_ca_certs": str(self.tls.ca)} if self.tls else {}))
        try:
            wait_until(lambda: client.ping(), f"redis-server on port {self.port}", timeout=30)
        except BaseException:
            self.stop()  # never leave a server behind that nothing will stop
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

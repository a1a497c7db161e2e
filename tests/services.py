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
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
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


def empty_database(backend: str, folder: Path):
    """A fresh, empty database of the backend ("sqlite": a file in `folder`; "postgresql": dropped afterwards), as a
    context that yields its SQLAlchemy URL."""
    return postgres_database() if backend == "postgresql" else nullcontext(f"sqlite:///{folder / 'db.sqlite'}")


def xdist_worker_index() -> int:
    """0 for the first pytest-xdist worker (gw0) or for a run without xdist, 1 for gw1, ..."""
    return int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))


def redis_url(database: int) -> str:
    """The test Redis with another database number: a stack of its own, whose workers no other stack's take tasks
    from (REDIS_URL's is for the tests that enqueue with no worker)."""
    return f"{REDIS_URL.rsplit('/', 1)[0]}/{database}"


@contextmanager
def redis_database(url: str = REDIS_URL):
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


@dataclass
class Certificates:
    """A certificate authority of the test's own, and a server certificate it signed for 127.0.0.1 (and localhost)."""

    ca: Path
    cert: Path
    key: Path


def make_certificates(directory: Path, name: str = "lime-batch test CA") -> Certificates:
    """A self-signed CA and a server certificate for 127.0.0.1 signed by it, made with openssl."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key, key, cert = (directory / f for f in ("ca.crt", "ca.key", "server.key", "server.crt"))

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
            "-subj", f"/CN={name}")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (directory / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-out", str(cert), "-days", "2", "-extfile", "san.cnf")
    return Certificates(ca, cert, key)


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

    def __init__(self, *options: str, tls: Certificates | None = None):
        self.options = list(options)  # server settings, e.g. "max_connections=5"
        self.tls = tls
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
        settings = [*self.options]
        if self.tls:  # the server's key must be the server's own and private
            for name in ("cert", "key"):
                target = self.data / f"server.{name}"
                shutil.copy(getattr(self.tls, name), target)
                target.chmod(0o600)
                if os.geteuid() == 0:
                    shutil.chown(target, "postgres", "postgres")
            settings += ["ssl=on", "ssl_cert_file=server.cert", "ssl_key_file=server.key"]
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.directory / "server.log"), "-w", "start",
            "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
                  + " ".join(f"-c {setting}" for setting in settings),
        )
        return self

    def stop(self) -> None:
        """A fast shutdown: open connections are cut, as in a database restart."""
        self._run("pg_ctl", "-D", str(self.data), "-w", "-m", "fast", "stop")

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


class PgBouncer:
    """PgBouncer in transaction mode in front of a PostgreSQL server on 127.0.0.1, on a spare port, with at most
    `pool_size` server connections per database (trust auth, as the test servers have)."""

    def __init__(self, postgres_port: int, pool_size: int):
        self.port = spare_port()
        self.directory = Path(tempfile.mkdtemp(prefix="lime-batch-pgbouncer-"))
        (self.directory / "users.txt").write_text('"postgres" ""\n')
        (self.directory / "pgbouncer.ini").write_text(
            f"[databases]\n* = host=127.0.0.1 port={postgres_port}\n[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\nauth_type = trust\n"
            f"auth_file = {self.directory / 'users.txt'}\npool_mode = transaction\ndefault_pool_size = {pool_size}\n"
            f"max_client_conn = 200\nadmin_users = postgres\nlogfile = {self.directory / 'pgbouncer.log'}\n"
        )
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        self.process: subprocess.Popen | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def show(self, what: str) -> list[dict]:
        """A SHOW command of PgBouncer's admin console (CLIENTS, SERVERS, POOLS), as rows."""
        with psycopg.connect(self.url("pgbouncer").replace("+psycopg", ""), autocommit=True) as console:
            cursor = console.execute(f"SHOW {what}")
            names = [column.name for column in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    def start(self) -> "PgBouncer":
        program = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # it refuses to run as root
        self.process = subprocess.Popen([*as_owner, program, str(self.directory / "pgbouncer.ini")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def answers() -> bool:
            try:
                with psycopg.connect(self.url().replace("+psycopg", ""), connect_timeout=2):
                    return True
            except psycopg.OperationalError:
                return False

        wait_until(answers, f"pgbouncer on port {self.port}", timeout=30)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        shutil.rmtree(self.directory, ignore_errors=True)

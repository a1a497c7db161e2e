"""Real services for the tests: throwaway PostgreSQL and Redis databases (created, then dropped or flushed) and,
for the fault tests, redis-server and PostgreSQL instances of their own to stop and restart. The throwaway database
and the own redis-server are the benchmarks' (benchmarks/services.py), on the TEST_* variables' servers here; the
product never imports this module."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager, nullcontext
from pathlib import Path

import psycopg
import redis

from benchmarks import services
from benchmarks.services import Certificates, spare_port, wait_until

REPO = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN = os.environ.get("TEST_POSTGRES_ADMIN_URL", services.POSTGRES_ADMIN)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")  # a database number of our own


def postgres_database(prefix: str = "limebatch_test"):
    """A fresh PostgreSQL database on the tests' server (TEST_POSTGRES_ADMIN_URL), as a context that yields its
    SQLAlchemy URL and drops it afterwards."""
    return services.postgres_database(prefix, POSTGRES_ADMIN)


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

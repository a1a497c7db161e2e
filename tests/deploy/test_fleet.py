"""Workers on other machines: Redis over TLS (rediss://, the certificate checked) and PostgreSQL with
sslmode=verify-full, against a CA of the test's own; a worker given the wrong CA refuses to start, saying why. And a
fleet with more worker connections than PostgreSQL's max_connections allows, served through PgBouncer in
transaction mode."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from benchmarks.services import RedisServer
from producer.local import Worker
from tests.services import PgBouncer, PostgresServer, make_certificates, redis_database, redis_url
from tests.stack import run_id_of, stacks


@pytest.fixture
def certificates(tmp_path):
    return make_certificates(tmp_path / "ca"), make_certificates(tmp_path / "wrong-ca", "a CA nobody asked for")


def refused(stack, env: dict, tmp_path, name: str) -> str:
    """Start a worker with `env` over the stack's; it must exit on its own with EX_CONFIG. Its log."""
    worker = Worker({**stack.env, **env}, concurrency=1, log=tmp_path / f"{name}.log").start(ready_timeout=None)
    assert worker.process.wait(120) == 78
    return worker.log.read_text()


def test_over_tls_with_checked_certificates_and_refused_with_the_wrong_ca(tmp_path, rectangles_model, certificates):
    good, wrong = certificates
    broker = RedisServer(tmp_path / "redis", tls=good).start()
    postgres = PostgresServer(tls=good).start()
    try:
        database = f"{postgres.url}?sslmode=verify-full&sslrootcert={good.ca}"
        with stacks(tmp_path, rectangles_model, settings={"BROKER_CA_CERTS": str(good.ca)}) as make:
            stack = make(broker.url, database)
            stack.start_worker()
            run_id = run_id_of(stack.enqueue("--dataset", "rectangles", "--limit", "4", "--wait").stdout)
            assert stack.counts(run_id).ok == 4
            with stack.session() as session:
                assert session.scalar(text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")) is True
            stack.retire(stack.worker)

            log = refused(stack, {"BROKER_CA_CERTS": str(wrong.ca)}, tmp_path, "wrong-broker-ca")
            assert "refusing to start: cannot trust the broker at rediss://127.0.0.1" in log
            assert "certificate verify failed" in log and "BROKER_CA_CERTS" in log
            log = refused(stack, {"DATABASE_URL": database.replace(str(good.ca), str(wrong.ca))}, tmp_path, "wrong-db-ca")
            assert "refusing to start: cannot trust the database at postgresql+psycopg://postgres@127.0.0.1" in log
            assert "certificate verify failed" in log and "sslrootcert" in log

            producer = stack.cli("producer", "enqueue", "--dataset", "rectangles", "--limit", "2",
                                 "--model", str(rectangles_model), check=False)
            assert producer.returncode == 0  # the good CA: sent
            stack.env["BROKER_CA_CERTS"] = str(wrong.ca)
            producer = stack.cli("producer", "enqueue", "--dataset", "rectangles", "--limit", "2",
                                 "--model", str(rectangles_model), check=False)
            assert producer.returncode == 2 and "cannot reach the broker at rediss://" in producer.stderr
            assert "certificate verify failed" in producer.stderr and len(producer.stderr.strip().splitlines()) == 1
    finally:
        postgres.remove()
        broker.stop()


def test_more_worker_connections_than_max_connections_through_pgbouncer(tmp_path, rectangles_model):
    postgres = PostgresServer("max_connections=5", "superuser_reserved_connections=0").start()
    bouncer = PgBouncer(postgres.port, pool_size=3).start()
    try:
        with redis_database(redis_url(15)) as broker, stacks(tmp_path, rectangles_model) as make:
            stack = make(broker, bouncer.url())
            for _ in range(2):
                stack.start_worker(concurrency=3)  # 6 worker processes and 2 main processes: 8 connections
            run_id = run_id_of(stack.enqueue("--dataset", "rectangles", "--limit", "30", "--wait").stdout)
            assert stack.counts(run_id).ok == 30
            clients = [c for c in bouncer.show("CLIENTS") if c["database"] == "postgres"]
            servers = [s for s in bouncer.show("SERVERS") if s["database"] == "postgres"]
            print(f"{len(clients)} client connections through PgBouncer, {len(servers)} server connections")
            assert len(clients) > 5 >= len(servers)  # more clients than PostgreSQL would take, on at most 3 servers
    finally:
        bouncer.stop()
        postgres.remove()


def test_a_worker_process_holds_one_database_connection(tmp_path):
    from db import session as sessions

    sessions.dispose_engines()
    try:
        sessions.one_connection_per_process()
        engine = sessions.get_engine(f"sqlite:///{tmp_path / 'one.db'}")
        assert (engine.pool.size(), engine.pool._max_overflow) == (1, 0)
    finally:
        sessions._connections = None
        sessions.dispose_engines()

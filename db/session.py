"""Engines and sessions. Helpers never open sessions of their own: the caller (a task, a CLI) owns them."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from core.settings import settings

SQLITE_BUSY_TIMEOUT_MS = 30_000


def make_engine(url: str, connections: int | None = None) -> Engine:
    """An engine for `url`; SQLite files get WAL, a busy timeout and foreign keys, and their folder. `connections`:
    the most it opens at once (default: SQLAlchemy's pool)."""
    parsed = make_url(url)
    pool = {} if connections is None else {"pool_size": connections, "max_overflow": 0}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **pool)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection, _record) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers (the progress bar) never block the workers
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    # No pre-ping: it costs a round trip per checkout, and a connection lost to a database restart
    # surfaces as OperationalError, which invalidates the pool and makes the task retry.
    # Through PgBouncer in transaction mode a prepared statement may meet another server connection: psycopg never
    # prepares (prepare_threshold None).
    return create_engine(url, connect_args={"prepare_threshold": None}, **pool)


_engines: dict[str, Engine] = {}
_connections: int | None = None


def one_connection_per_process() -> None:
    """Worker processes run one task at a time: each holds at most one database connection, so a fleet needs one
    connection per process (more than PostgreSQL's max_connections go through PgBouncer, see docs)."""
    global _connections
    _connections = 1


def get_engine(url: str | None = None) -> Engine:
    """This process's engine for `url` (default DATABASE_URL), made on first use, so after any fork."""
    url = url or settings.database
    if url not in _engines:
        _engines[url] = make_engine(url, _connections)
    return _engines[url]


def session_factory(url: str | None = None) -> sessionmaker[Session]:
    return sessionmaker(get_engine(url), expire_on_commit=False)


def dispose_engines() -> None:
    """Forget every engine without closing the parent's connections: for a freshly forked child."""
    for engine in _engines.values():
        engine.dispose(close=False)
    _engines.clear()

"""The embedded broker of `python -m producer local`: kombu's SQLAlchemy transport on a SQLite file,
polling every 50 ms instead of every second (which would cap a local run at one task per second
per worker). Registered as the `localsqla` transport: `localsqla+sqlite:///path/broker.db`."""

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport.sqlalchemy import Channel as SQLAlchemyChannel
from kombu.transport.sqlalchemy import Transport as SQLAlchemyTransport
from sqlalchemy.exc import IntegrityError, OperationalError

ALIAS = "localsqla"
KOMBU_TABLES = 2  # kombu_queue, kombu_message
DRAIN_AT_MOST_S = 0.25


class Channel(SQLAlchemyChannel):
    """kombu's channel, safe when processes open a new broker file at once (the producer and its workers do): kombu
    guards its create-if-missing steps with a lock of one process only, so the second process to create the tables or
    the queue's row failed (a worker then exited at its start)."""

    def _open(self):
        for _ in range(KOMBU_TABLES):
            try:
                return super()._open()
            except OperationalError as error:  # a table made by another process between kombu's look and its create
                if "already exists" not in str(error):
                    raise
        return super()._open()  # each failure above was one more table made: all are there now

    def _get_or_create(self, queue):
        try:
            return super()._get_or_create(queue)
        except IntegrityError:  # the queue's row, made by another process between kombu's look and its insert
            self.session.rollback()
            return self.session.query(self.queue_cls).filter(self.queue_cls.name == queue).one()


class Transport(SQLAlchemyTransport):
    Channel = Channel
    polling_interval = 0.05

    def drain_events(self, connection, timeout=None):
        """At most a quarter of a second a call (when a timeout is given): a worker on this transport runs Celery's
        blocking loop, which drains for 2 s at a time and once more after a shutdown was asked, so that every local
        run ended with seconds of waiting for its workers to stop."""
        return super().drain_events(connection, timeout=None if timeout is None else min(timeout, DRAIN_AT_MOST_S))


def register() -> None:
    TRANSPORT_ALIASES.setdefault(ALIAS, "worker.local_broker:Transport")


def url_for(database_file) -> str:
    return f"{ALIAS}+sqlite:///{database_file}"

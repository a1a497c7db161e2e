"""The embedded broker of `python -m producer local`: kombu's SQLAlchemy transport on a SQLite file,
polling every 50 ms instead of every second (which would cap a local run at one task per second
per worker). Registered as the `localsqla` transport: `localsqla+sqlite:///path/broker.db`."""

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport.sqlalchemy import Transport as SQLAlchemyTransport

ALIAS = "localsqla"


class Transport(SQLAlchemyTransport):
    polling_interval = 0.05


def register() -> None:
    TRANSPORT_ALIASES.setdefault(ALIAS, "worker.local_broker:Transport")


def url_for(database_file) -> str:
    return f"{ALIAS}+sqlite:///{database_file}"

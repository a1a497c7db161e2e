"""Run Alembic migrations from code: no alembic.ini needed, the scripts ship inside the package."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from core.settings import settings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", (url or settings.database).replace("%", "%%"))
    return config


def shown_url(url: str) -> str:
    """A database URL fit for messages: no password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparseable URL)"


class DatabaseUnavailable(RuntimeError):
    """The database URL is malformed, names a driver we lack, or nothing answers there."""


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Bring the database at `url` (default DATABASE_URL) up to `revision`; safe to rerun."""
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

    url = url or settings.database
    try:
        command.upgrade(alembic_config(url), revision)
    except (ArgumentError, NoSuchModuleError, OperationalError) as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise DatabaseUnavailable(f"cannot use the database at {shown_url(url)}: {reason}") from None

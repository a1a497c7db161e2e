"""What the producer's tests share: a database and a broker of their own, and how a refusal looks."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import invoke
from tests.services import redis_database


@pytest.fixture
def env(tmp_path):
    with redis_database() as broker:
        database = f"sqlite:///{tmp_path / 'results.db'}"
        env = {"DATABASE_URL": database, "CELERY_BROKER_URL": broker, "DATA_DIR": str(tmp_path / "data")}
        invoke("db", "upgrade", env=env)
        yield env


def stored_rows(env) -> dict[str, int]:
    engine = create_engine(env["DATABASE_URL"])
    with engine.connect() as connection:
        counts = {t: connection.scalar(text(f"SELECT COUNT(*) FROM {t}")) for t in ("runs", "images", "run_images")}
    engine.dispose()
    return counts


def assert_refused(result, message: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0]

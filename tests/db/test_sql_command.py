"""`python -m db sql`: one query's rows as a table, CSV or JSON; anything else is refused and nothing changes."""

from __future__ import annotations

import json

from tests.conftest import invoke


def test_sql_prints_rows_and_changes_nothing(sessions, run, tmp_path):
    env = {"DATABASE_URL": sessions.kw["bind"].url.render_as_string(hide_password=False), "DATA_DIR": str(tmp_path)}
    rows = json.loads(invoke("db", "sql", "SELECT name, image_count FROM runs", "--format", "json", env=env).stdout)
    assert rows == [{"name": "cats", "image_count": 3}]
    for statement in ("DELETE FROM runs", "UPDATE runs SET name = 'x'"):
        refused = invoke("db", "sql", statement, check=False, env=env)
        assert refused.returncode == 2 and "nothing was changed" in refused.stderr
    broken = invoke("db", "sql", "SELEC 1", check=False, env=env)
    assert broken.returncode == 2 and broken.stderr.startswith("error: the query failed:")
    assert json.loads(invoke("db", "sql", "SELECT name FROM runs", "--format", "json", env=env).stdout) == [{"name": "cats"}]

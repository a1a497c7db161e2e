from tests.db.conftest import sessions  # noqa: F401  (a migrated database of each kind per test)

"""Results in SQL: typed models, Alembic migrations, query functions and the views users query."""

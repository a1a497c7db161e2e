"""Celery worker: the app (worker.celery), thin tasks (worker.tasks) and the pure LIME engine (worker.engine)."""

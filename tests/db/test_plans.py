"""Per-image database work does not grow with the run: every statement a worker (and the window) makes for one image,
EXPLAINed on PostgreSQL over a run of 100,000 images, reads the big tables through their indexes only."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import event, text
from sqlalchemy.orm import sessionmaker

from db import jobs
from db.migrate import upgrade
from db.session import make_engine
from tests.db.conftest import save_result
from tests.services import postgres_database
from worker.engine import ExplainParams, explain

IMAGES = 100_000
BIG_TABLES = ("images", "run_images", "explanations", "segment_weights")

pytestmark = pytest.mark.slow  # 100,000 images written to PostgreSQL first


def fill(connection) -> None:
    """One running run of IMAGES images: half explained (ok), 500 queued, the rest waiting; a second, finished run."""
    connection.execute(text("INSERT INTO model_files (sha256, content, size, metadata, created_at) "
                            "VALUES (repeat('a', 64), '\\x00', 1, '{}', now())"))
    for run_id, status in ((1, "running"), (2, "done")):
        connection.execute(text(
            "INSERT INTO runs (id, name, model_path, model_sha256, class_names, params, source, status, value_range, "
            "outputs, image_count, next_position, finished_count, created_at) VALUES "
            f"({run_id}, 'big', 'm.keras', repeat('a', 64), '[\"a\", \"b\"]', '{{}}', 'test', '{status}', '[0, 1]', "
            f"'probabilities', {IMAGES}, {IMAGES // 2 + 500}, {IMAGES // 2}, now())"))
    connection.execute(text(
        "INSERT INTO images (id, sha256, source, width, height, channels, png, created_at) "
        f"SELECT g, md5(g::text) || md5(g::text), 'x', 8, 8, 3, '\\x00', now() FROM generate_series(1, {IMAGES}) g"))
    for run_id in (1, 2):
        connection.execute(text(
            "INSERT INTO run_images (run_id, image_id, position, true_label) "
            f"SELECT {run_id}, g, g - 1, g % 2 FROM generate_series(1, {IMAGES}) g"))
        connection.execute(text(
            "INSERT INTO explanations (run_id, image_id, status, attempts, updated_at) "
            f"SELECT {run_id}, g, CASE WHEN g <= {IMAGES // 2} OR {run_id} = 2 THEN 'ok' ELSE 'queued' END, 1, now() "
            f"FROM generate_series(1, {IMAGES // 2 + 500 if run_id == 1 else IMAGES}) g"))
        connection.execute(text(
            "INSERT INTO segment_weights (explanation_id, label, segment, weight, area) "
            f"SELECT id, 0, s, 0.1, 10 FROM explanations, generate_series(0, 9) s WHERE run_id = {run_id} AND status = 'ok'"))
    connection.execute(text("ANALYZE"))


@pytest.fixture(scope="module")
def big():
    with postgres_database() as url:
        upgrade(url)
        engine = make_engine(url)
        with engine.begin() as connection:
            fill(connection)
        try:
            yield engine
        finally:
            engine.dispose()


def explained(engine, work) -> list[str]:
    """Run `work(session)` in a transaction that is rolled back, and return the plan of every statement it made."""
    plans = []

    def explain_it(connection, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(("SELECT", "INSERT", "UPDATE")):
            cursor.execute("EXPLAIN " + statement, parameters)
            plans.append(statement.split()[0] + ": " + " / ".join(row[0].strip() for row in cursor.fetchall()))

    with engine.connect() as connection:
        event.listen(connection, "before_cursor_execute", explain_it)
        with connection.begin() as transaction:
            work(sessionmaker(bind=connection)())
            transaction.rollback()
    return plans


def test_a_workers_statements_for_one_image_use_indexes_only(big):
    image = np.random.default_rng(0).random((8, 8, 3)).astype(np.float32)
    result = explain(image, lambda x: np.stack([x.mean(axis=(1, 2, 3)), 1 - x.mean(axis=(1, 2, 3))], axis=1),
                     ExplainParams(num_samples=20, segmentation="slic", n_segments=4))

    def one_image(session):
        job = jobs.claim(session, jobs.read_job(session, 1, IMAGES // 2 + 10), "w")  # a queued image
        save_result(session, job, result, "w")  # with the run's count
        [feedable] = jobs.runs_to_feed(session)
        jobs.take_for_sending(session, feedable, jobs.images_at(session, 1, feedable.next_position, 100))
        jobs.sent_unfinished(session)
        jobs.runs_without_input_check(session)
        jobs.finish_run_if_complete(session, 1)

    plans = explained(big, one_image)
    assert len(plans) >= 9, plans
    scans = [plan for plan in plans if any(f"Seq Scan on {table}" in plan for table in BIG_TABLES)]
    assert scans == [], "\n".join(plans)
    print("\n".join(plans))

"""The fault tests' stack: a database, a broker, real celery workers, one run of 100 demo images,
ways to hit a task in the middle, and the figures that say whether anything was lost or doubled."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from producer.local import Worker
from db import reads
from db.models import FINISHED, Explanation, Run, RunImage, SegmentWeight
from db.session import make_engine
from tests.conftest import run_cli
from tests.pipeline.test_pipeline import run_id_of
from tests.waiting import wait_for_run

IMAGES = 100
# Short, so that a task whose worker died comes back in seconds rather than the production hour;
# the time limits stay below the visibility timeout, as the worker insists.
FAULT_SETTINGS = {
    "VISIBILITY_TIMEOUT_S": "20",
    "TASK_SOFT_TIME_LIMIT_S": "8",
    "TASK_TIME_LIMIT_S": "10",
    "MAX_ATTEMPTS": "3",
    "SWEEP_INTERVAL_S": "3",
    "WORKER_CONCURRENCY": "2",
}

table: list[dict] = []  # every report of the session, for its summary


class Faults:
    """One test's stack: a database, a broker, workers, and the run's figures."""

    def __init__(self, tmp: Path, model: Path, database_url: str, broker_url: str):
        self.tmp = tmp
        self.model = model
        self.env = {**FAULT_SETTINGS, "DATABASE_URL": database_url, "CELERY_BROKER_URL": broker_url,
                    "DATA_DIR": str(tmp / "data")}
        run_cli("db", "upgrade", env=self.env)
        self.engine = make_engine(database_url)
        self.session = sessionmaker(self.engine, expire_on_commit=False)
        self.workers: list[Worker] = []
        self.enqueued_at = 0.0

    def start_worker(self) -> Worker:
        worker = Worker(self.env, concurrency=2, log=self.tmp / f"worker-{len(self.workers)}.log").start()
        self.workers.append(worker)
        return worker

    def cli(self, package: str, *args: str):
        return run_cli(package, *args, env=self.env)

    def enqueue(self, name: str) -> int:
        """Send the run of IMAGES demo images; its clock, for the report, starts here."""
        self.enqueued_at = time.monotonic()
        return run_id_of(self.cli(
            "producer", "enqueue", "--model", str(self.model), "--dataset", "rectangles", "--limit", str(IMAGES),
            "--name", name, "--preset", "article",  # lime's cheap settings: the faults are the point here, as before
        ).stdout)

    def counts(self, run_id: int) -> reads.RunCounts:
        with self.session() as session:
            return reads.run_counts(session, run_id)

    def wait_finished(self, run_id: int, at_least: int, timeout: float = 240) -> reads.RunCounts:
        """Until at least `at_least` images of the run have a finished (ok or failed) result."""
        return wait_for_run(self.session, run_id, at_least, timeout)

    def signal_a_running_task(
        self, run_id: int, sig: int, image_ids: list[int] | None = None, spare: set[int] = frozenset(),
        max_attempts: int | None = None,
    ) -> tuple[int, int] | None:
        """Send `sig` to a live worker process (not one of `spare`) explaining an image of the run (one of
        `image_ids` if given, on attempt `max_attempts` at most), caught in the middle: the test holds the
        row's lock meanwhile, so the task cannot save first. Returns (image id, pid), or None if no such
        image is being explained now."""
        live = {pid for worker in self.workers if worker.alive() for pid in worker.child_pids()} - spare
        query = select(Explanation.image_id, Explanation.worker_host).where(
            Explanation.run_id == run_id, Explanation.status == "running"
        )
        if image_ids is not None:
            query = query.where(Explanation.image_id.in_(image_ids))
        if max_attempts is not None:
            query = query.where(Explanation.attempts <= max_attempts)
        with self.engine.connect() as connection, connection.begin():
            for image_id, host in connection.execute(query.with_for_update(skip_locked=True)):
                pid = int(host.rsplit(":", 1)[1])
                if pid in live:  # a row left running by a process that died already is not mid-task
                    os.kill(pid, sig)
                    return image_id, pid
        return None

    def sent_again_by_sweeper(self) -> int:
        """Images the workers' sweeper sent again, read from the workers' logs."""
        return sum(
            int(n) for log in self.tmp.glob("worker-*.log")
            for n in re.findall(r"(\d+) image\(s\) lost by the broker", log.read_text())
        )

    def attempts(self, run_id: int, image_ids: list[int]) -> dict[int, int]:
        with self.session() as session:
            return dict(session.execute(
                select(Explanation.image_id, Explanation.attempts)
                .where(Explanation.run_id == run_id, Explanation.image_id.in_(image_ids))
            ).all())

    def figures(self, run_id: int) -> dict:
        """Exactly one finished row per image is the goal: lost counts images without one, duplicated
        images with more than one row or with a weight set that is not exactly one per segment and label."""
        with self.session() as session:
            members = session.scalars(select(RunImage.image_id).where(RunImage.run_id == run_id)).all()
            rows = session.execute(
                select(Explanation.id, Explanation.image_id, Explanation.status, Explanation.attempts,
                       Explanation.n_segments).where(Explanation.run_id == run_id)
            ).all()
            weights = dict(session.execute(
                select(SegmentWeight.explanation_id, func.count()).join(Explanation)
                .where(Explanation.run_id == run_id).group_by(SegmentWeight.explanation_id)
            ).all())
            labels = dict(session.execute(
                select(SegmentWeight.explanation_id, func.count(func.distinct(SegmentWeight.label))).join(Explanation)
                .where(Explanation.run_id == run_id).group_by(SegmentWeight.explanation_id)
            ).all())
            run = session.get(Run, run_id)
        rows_of = {image_id: [r for r in rows if r.image_id == image_id] for image_id in members}
        finished = {image_id for image_id, own in rows_of.items() if any(r.status in FINISHED for r in own)}
        bad_weights = [
            r for r in rows
            if (r.status == "ok" and weights.get(r.id) != r.n_segments * labels.get(r.id, 0))
            or (r.status != "ok" and r.id in weights)
        ]
        return {
            "images": len(members),
            "rows": len(rows),
            "ok": sum(r.status == "ok" for r in rows),
            "failed": sum(r.status == "failed" for r in rows),
            "retried": sum(r.attempts > 1 for r in rows),
            "lost": len(members) - len(finished),
            "duplicated": sum(len(own) > 1 for own in rows_of.values()) + len(bad_weights),
            "run_status": run.status,
        }

    def report(self, fault: str, run_id: int, faults: int) -> dict:
        seconds = time.monotonic() - self.enqueued_at
        figures = {"fault": fault, "faults": faults, **self.figures(run_id), "seconds": round(seconds, 1)}
        print("\n" + "  ".join(f"{key}={value}" for key, value in figures.items()))
        table.append(figures)
        return figures

    def close(self) -> None:
        for worker in self.workers:
            worker.stop(timeout=30)
        self.engine.dispose()


def assert_nothing_lost_or_doubled(figures: dict) -> None:
    assert figures["lost"] == 0 and figures["duplicated"] == 0, figures
    assert figures["rows"] == figures["images"] == IMAGES and figures["run_status"] == "done", figures

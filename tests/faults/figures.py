"""What the fault tests do on their stacks: one run of 40 demo images, ways to hit a task in the middle, and
the figures that say whether anything was lost or doubled."""

from __future__ import annotations

import json
import re
import time

from sqlalchemy import func, select

from db.models import FINISHED, Explanation, Run, RunImage, SegmentWeight
from tests.stack import Stack, run_id_of
from tests.waiting import wait_until

IMAGES = 40
MIDWAY = 12  # the position of the image in whose middle a fault strikes: the run under way, most of it still to do
# Short, so that a task whose worker died comes back in seconds rather than the production hour; the time limits
# stay below the visibility timeout, as the worker insists. A child's first task loads the model (seconds on a
# loaded 2-core machine), and it counts against the limits: they leave room for it.
FAULT_SETTINGS = {
    "VISIBILITY_TIMEOUT_S": "30",
    "TASK_SOFT_TIME_LIMIT_S": "15",
    "TASK_TIME_LIMIT_S": "25",
    "MAX_ATTEMPTS": "3",
    "DATABASE_RETRY_MAX_S": "8",  # a task's tries while PostgreSQL is down: 2, 4, 8, 8, ... s (jittered)
    "SWEEP_INTERVAL_S": "3",
    "LOST_WORKER_AFTER_S": "10",
    "WORKER_CONCURRENCY": "2",
}

table: list[dict] = []  # every report of the session, for its summary


def enqueue_run(stack: Stack, name: str) -> int:
    """Send the run of IMAGES demo images; its clock, for the report, starts here."""
    return run_id_of(stack.enqueue("--dataset", "rectangles", "--limit", str(IMAGES), "--name", name).stdout)


def images_at(stack: Stack, run_id: int, positions: tuple[int, ...]) -> list[int]:
    """The run's images at these positions (the window sends them in this order): where the faults strike."""
    with stack.session() as session:
        by_position = session.scalars(
            select(RunImage.image_id).where(RunImage.run_id == run_id).order_by(RunImage.position)).all()
    return [by_position[position] for position in positions]


class Holds:
    """The test's side of tests.faults.held_images: the first `times` deliveries of each image given stop in the middle
    of their explanation until released, and the test acts on each hold as it comes. Make it before starting the
    stack's workers."""

    def __init__(self, stack: Stack, times: dict[int, int]):
        self.folder = stack.tmp / "holds"
        self.folder.mkdir(exist_ok=True)
        stack.env.update({"HELD_IMAGES": json.dumps(times), "HOLDS_DIR": str(self.folder)})
        self.seen: set[str] = set()

    @classmethod
    def once_at(cls, stack: Stack, run_id: int, positions: tuple[int, ...]) -> "Holds":
        """The first delivery of the run's images at these positions held."""
        return cls(stack, {image_id: 1 for image_id in images_at(stack, run_id, positions)})

    def next(self, timeout: float = 120) -> tuple[int, int, int]:
        """(image id, delivery, pid) of the next hold: a live worker process, its image claimed and not saved."""
        def new_hold():
            return sorted(path for path in self.folder.glob("*.held") if path.stem not in self.seen)

        path = wait_until(new_hold, "an image held by a worker", timeout=timeout, every=0.01)[0]
        self.seen.add(path.stem)
        image_id, delivery = map(int, path.stem.split("-"))
        return image_id, delivery, int(path.read_text())

    def release(self, image_id: int, delivery: int) -> None:
        (self.folder / f"{image_id}-{delivery}.go").touch()


def sent_again_by_sweeper(stack: Stack) -> int:
    """Images the workers' sweeper sent again, read from the workers' logs."""
    return sum(
        int(n) for worker in stack.workers
        for n in re.findall(r"(\d+) image\(s\) lost by the broker", worker.log.read_text())
    )


def declared_lost(stack: Stack) -> list[tuple[str, int, int]]:
    """(worker, tasks sent again, tasks it held) for every worker the sweepers declared lost, from the workers' logs."""
    return [
        (name, int(again), int(held)) for worker in stack.workers
        for name, again, held in re.findall(
            r"worker (\S+) lost \(no heartbeat for \d+ s\): (\d+) of the (\d+) task", worker.log.read_text())
    ]


def attempts(stack: Stack, run_id: int, image_ids: list[int]) -> dict[int, int]:
    with stack.session() as session:
        return dict(session.execute(
            select(Explanation.image_id, Explanation.attempts)
            .where(Explanation.run_id == run_id, Explanation.image_id.in_(image_ids))
        ).all())


def figures(stack: Stack, run_id: int) -> dict:
    """Exactly one finished row per image is the goal: lost counts images without one, duplicated
    images with more than one row or with a weight set that is not exactly one per segment and label."""
    with stack.session() as session:
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


def report(stack: Stack, fault: str, run_id: int, faults: int) -> dict:
    """The run's figures, printed and kept for the session's fault table; seconds count from the enqueue."""
    seconds = time.monotonic() - stack.enqueued_at
    found = {"fault": fault, "faults": faults, **figures(stack, run_id), "seconds": round(seconds, 1)}
    print("\n" + "  ".join(f"{key}={value}" for key, value in found.items()))
    table.append(found)
    return found


def assert_nothing_lost_or_doubled(figures: dict) -> None:
    assert figures["lost"] == 0 and figures["duplicated"] == 0, figures
    assert figures["rows"] == figures["images"] == IMAGES and figures["run_status"] == "done", figures

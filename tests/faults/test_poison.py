"""Images that break their worker every time: a poison image that kills the process explaining it, one
whose explanation hangs past the hard time limit, and one that runs past the soft time limit. Each ends
as a failed row with its reason after a bounded number of attempts; the rest of the run completes.

The test plays the images' part: a saboteur thread watches the rows and, whenever a worker process
claims one of these images, signals that process in the middle of the work (SIGKILL: a crash; SIGSTOP:
a hang; SIGSTOP, then SIGCONT once the soft limit has passed: a slow image)."""

from __future__ import annotations

import os
import signal
import threading
import time

from sqlalchemy import select

from db.models import Explanation, RunImage
from tests.faults.figures import (
    FAULT_SETTINGS, IMAGES, assert_nothing_lost_or_doubled, enqueue_run, report, signal_a_running_task,
)


SOFT_LIMIT_S = int(FAULT_SETTINGS["TASK_SOFT_TIME_LIMIT_S"])
MAX_ATTEMPTS = 2  # the bound shows as well as with 3, and each attempt at the hung image waits out the hard limit
SIGNAL_OF = {"poison": signal.SIGKILL, "hung": signal.SIGSTOP, "slow": signal.SIGSTOP}


class Saboteur(threading.Thread):
    """Signals every process that claims one of the chosen images, once per process."""

    def __init__(self, faults, run_id: int, roles: dict[int, str]):
        super().__init__(daemon=True)
        self.faults, self.run_id, self.roles = faults, run_id, roles
        self.hits: dict[str, list[int]] = {role: [] for role in roles.values()}  # pids hit, per role
        self.stop = threading.Event()

    def run(self) -> None:
        signals = {image_id: SIGNAL_OF[role] for image_id, role in self.roles.items()}
        while not self.stop.is_set():  # one look for the three images at a time: a task lasts tens of milliseconds
            spare = {image_id: set(self.hits[role]) for image_id, role in self.roles.items()}
            # Past MAX_ATTEMPTS the task gives up without touching the image, so the image cannot hurt it.
            hit = signal_a_running_task(self.faults, self.run_id, signals, spare=spare, max_attempts=MAX_ATTEMPTS)
            if hit is not None:
                role = self.roles[hit[0]]
                self.hits[role].append(hit[1])
                if role == "slow":
                    threading.Timer(SOFT_LIMIT_S + 1, _continue, (hit[1],)).start()
            time.sleep(0.005)


def _continue(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


def test_poison_hung_and_slow_images_end_failed_and_the_run_completes(faults):
    faults.env.update({"MAX_ATTEMPTS": str(MAX_ATTEMPTS)})
    run_id = enqueue_run(faults, "poisoned")  # no worker yet: the saboteur is in place before any claim
    with faults.session() as session:
        by_position = session.scalars(
            select(RunImage.image_id).where(RunImage.run_id == run_id).order_by(RunImage.position)
        ).all()
    roles = {by_position[5]: "poison", by_position[15]: "hung", by_position[25]: "slow"}
    saboteur = Saboteur(faults, run_id, roles)
    saboteur.start()
    try:
        faults.start_worker()
        faults.wait_finished(run_id, IMAGES, timeout=400)
    finally:
        saboteur.stop.set()
        saboteur.join()
    hits = {role: len(pids) for role, pids in saboteur.hits.items()}
    figures = report(faults, "poison (SIGKILL), hung (SIGSTOP), slow images", run_id, sum(hits.values()))
    with faults.session() as session:
        rows = {
            roles[row.image_id]: row for row in session.scalars(
                select(Explanation).where(Explanation.run_id == run_id, Explanation.image_id.in_(roles)))
        }
    for role, row in rows.items():
        print(f"{role}: hit {hits[role]} time(s); stored {row.status} after {row.attempts} attempt(s): {row.error}")
    assert_nothing_lost_or_doubled(figures)
    assert (figures["ok"], figures["failed"]) == (IMAGES - 3, 3)
    gave_up = f"gave up after {MAX_ATTEMPTS} attempts"
    assert rows["poison"].status == "failed" and rows["poison"].error.startswith(gave_up)
    assert rows["poison"].attempts == MAX_ATTEMPTS + 1 and hits["poison"] == MAX_ATTEMPTS
    assert rows["hung"].status == "failed" and rows["hung"].error.startswith(gave_up)
    assert rows["hung"].attempts == MAX_ATTEMPTS + 1 and hits["hung"] == MAX_ATTEMPTS
    assert rows["slow"].status == "failed" and rows["slow"].error == f"time limit of {SOFT_LIMIT_S} s exceeded"
    assert rows["slow"].attempts == 1

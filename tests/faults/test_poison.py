"""Images that break their worker every time: a poison image that kills the process explaining it, one
whose explanation hangs past the hard time limit, and one that runs past the soft time limit. Each ends
as a failed row with its reason after a bounded number of attempts; the rest of the run completes.

The test plays the images' part. Its workers hold these images in the middle of their explanation
(tests.faults.held_images), and the test strikes each holding process: SIGKILL (a crash), SIGSTOP (a hang that
ignores the soft limit's signal); the slow image is simply never released, so its soft time limit strikes in the
middle of the explanation."""

from __future__ import annotations

import os
import signal

from sqlalchemy import select

from db.models import Explanation
from tests.faults.figures import (
    FAULT_SETTINGS, IMAGES, Holds, assert_nothing_lost_or_doubled, enqueue_run, images_at, report,
)


SOFT_LIMIT_S = int(FAULT_SETTINGS["TASK_SOFT_TIME_LIMIT_S"])
MAX_ATTEMPTS = 2  # the bound shows as well as with 3, and each attempt at the hung image waits out the hard limit
SIGNAL_OF = {"poison": signal.SIGKILL, "hung": signal.SIGSTOP}


def test_poison_hung_and_slow_images_end_failed_and_the_run_completes(faults):
    faults.env.update({"MAX_ATTEMPTS": str(MAX_ATTEMPTS)})
    run_id = enqueue_run(faults, "poisoned")  # no worker yet: the holds are in place before any claim
    roles = dict(zip(images_at(faults, run_id, (5, 15, 25)), ("poison", "hung", "slow")))
    # poison and hung: every attempt up to the last (past it the task gives up without explaining); slow: once
    holds = Holds(faults, {image_id: 1 if role == "slow" else MAX_ATTEMPTS for image_id, role in roles.items()})
    faults.start_worker()
    hits = {role: 0 for role in roles.values()}
    for _ in range(2 * MAX_ATTEMPTS + 1):
        image_id, _, pid = holds.next(timeout=300)
        hits[roles[image_id]] += 1
        if roles[image_id] in SIGNAL_OF:
            os.kill(pid, SIGNAL_OF[roles[image_id]])
    faults.wait_finished(run_id, IMAGES, timeout=400)
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
    assert rows["poison"].attempts == MAX_ATTEMPTS + 1
    assert rows["hung"].status == "failed" and rows["hung"].error.startswith(gave_up)
    assert rows["hung"].attempts == MAX_ATTEMPTS + 1
    assert rows["slow"].status == "failed" and rows["slow"].error == f"time limit of {SOFT_LIMIT_S} s exceeded"
    assert rows["slow"].attempts == 1

"""Workers killed in the middle of a run: one child, then the whole worker; and a worker that is only slow."""

from __future__ import annotations

import os
import signal
import time

from tests.faults.figures import (
    FAULT_SETTINGS, IMAGES, MIDWAY, Holds, assert_nothing_lost_or_doubled, attempts, declared_lost, enqueue_run,
    report, sent_again_by_sweeper,
)
from tests.waiting import wait_until

VISIBILITY_S = 600
REALISTIC_VISIBILITY = {"VISIBILITY_TIMEOUT_S": str(VISIBILITY_S)}  # production's is 3600: 600 is just as out of reach
LOST_AFTER_S = int(FAULT_SETTINGS["LOST_WORKER_AFTER_S"])
STRUCK = (8, 18, 28)  # the positions of the children killed: three times, each a task caught in the middle


def test_a_worker_child_killed_mid_task_loses_nothing(faults):
    run_id = enqueue_run(faults, "child-killed")
    holds = Holds.once_at(faults, run_id, STRUCK)
    worker = faults.start_worker()
    killed = []
    for _ in STRUCK:
        image_id, _, pid = holds.next()
        os.kill(pid, signal.SIGKILL)
        killed.append((image_id, pid))
    faults.wait_finished(run_id, IMAGES)
    figures = report(faults, "SIGKILL one worker child mid-task (x3)", run_id, len(killed))
    assert_nothing_lost_or_doubled(figures)
    tries = attempts(faults, run_id, [image for image, _ in killed])
    print("killed (image, pid):", killed, "their attempts:", tries)
    assert figures["ok"] == IMAGES and all(n >= 2 for n in tries.values())
    assert worker.alive() and len(worker.child_pids()) == 2  # the pool replaced its dead children


def test_a_whole_worker_killed_mid_run_is_recovered_once_its_heartbeats_stop(faults):
    """With a production-like visibility timeout, the dead worker's tasks come back after LOST_WORKER_AFTER_S (and
    the next sweep), not after the visibility timeout."""
    faults.env.update(REALISTIC_VISIBILITY)
    run_id = enqueue_run(faults, "worker-killed")
    holds = Holds.once_at(faults, run_id, (MIDWAY,))
    first = faults.start_worker()
    holds.next()  # a task mid-way
    first.kill()  # main process and children at once: the tasks it held stay unacknowledged in Redis
    killed = time.monotonic()
    killed_at = faults.counts(run_id).finished
    faults.start_worker()
    lost = wait_until(lambda: declared_lost(faults), "the dead worker declared lost", timeout=120)
    detected = time.monotonic() - killed
    faults.wait_finished(run_id, IMAGES, timeout=300)
    completed = time.monotonic() - killed
    figures = report(faults, f"SIGKILL a whole worker, start a new one (lost after {LOST_AFTER_S} s; "
                             f"visibility timeout {VISIBILITY_S} s)", run_id, 1)
    print(f"finished when killed: {killed_at}; declared lost {detected:.1f} s after the kill ({lost}); the run "
          f"complete {completed:.1f} s after it; sent again by the sweeper: {sent_again_by_sweeper(faults)}")
    assert_nothing_lost_or_doubled(figures)
    assert figures["ok"] == IMAGES and figures["retried"] >= 1
    (name, resent, held), = lost
    assert name.split("@")[0] == first.name.split("@")[0] and 1 <= resent <= held
    # the last heartbeat before the kill set the key's clock: up to one heartbeat (2 s) before it
    assert detected >= LOST_AFTER_S - 2.5 and completed < VISIBILITY_S / 4


def test_a_slow_worker_that_still_sends_heartbeats_is_not_declared_lost(faults):
    """A task stalled (SIGSTOP) for longer than LOST_WORKER_AFTER_S in a worker whose main process is alive: nothing
    is sent again, the task finishes on its first attempt."""
    faults.env.update({**REALISTIC_VISIBILITY, "TASK_SOFT_TIME_LIMIT_S": "60", "TASK_TIME_LIMIT_S": "70"})
    run_id = enqueue_run(faults, "slow-worker")
    holds = Holds.once_at(faults, run_id, (5,))
    faults.start_worker()
    image_id, delivery, pid = holds.next()
    os.kill(pid, signal.SIGSTOP)
    stalled_s = LOST_AFTER_S + 3 * int(FAULT_SETTINGS["SWEEP_INTERVAL_S"])  # sweeps looked well past the limit
    time.sleep(stalled_s)  # the fault itself: a task that takes this long
    os.kill(pid, signal.SIGCONT)
    holds.release(image_id, delivery)
    faults.wait_finished(run_id, IMAGES)
    figures = report(faults, f"one task stalled {stalled_s} s, heartbeats going (lost after {LOST_AFTER_S} s)", run_id, 1)
    assert_nothing_lost_or_doubled(figures)
    assert declared_lost(faults) == [] and attempts(faults, run_id, [image_id]) == {image_id: 1}
    assert figures["ok"] == IMAGES and figures["retried"] == 0

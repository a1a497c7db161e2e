"""Workers killed in the middle of a run: one child, then the whole worker."""

from __future__ import annotations

import signal
import time

import pytest

from tests.faults.stack import IMAGES, assert_nothing_lost_or_doubled

pytestmark = pytest.mark.slow  # minutes of real faults; CI runs them


def test_a_worker_child_killed_mid_task_loses_nothing(faults):
    worker = faults.start_worker()
    run_id = faults.enqueue("child-killed")
    killed = []
    for progress in (20, 45, 70):  # three times, each a task caught in the middle
        faults.wait_finished(run_id, progress)
        while (hit := faults.signal_a_running_task(run_id, signal.SIGKILL)) is None:
            time.sleep(0.01)
        killed.append(hit)
    faults.wait_finished(run_id, IMAGES)
    figures = faults.report("SIGKILL one worker child mid-task (x3)", run_id, len(killed))
    assert_nothing_lost_or_doubled(figures)
    attempts = faults.attempts(run_id, [image for image, _ in killed])
    print("killed (image, pid):", killed, "their attempts:", attempts)
    assert figures["ok"] == IMAGES and all(n >= 2 for n in attempts.values())
    assert worker.alive() and len(worker.child_pids()) == 2  # the pool replaced its dead children


def test_a_whole_worker_killed_mid_run_is_taken_over_by_a_new_one(faults):
    first = faults.start_worker()
    run_id = faults.enqueue("worker-killed")
    faults.wait_finished(run_id, 30)
    while faults.signal_a_running_task(run_id, 0) is None:  # signal 0: only make sure a task is mid-way
        time.sleep(0.01)
    first.kill()  # main process and children at once: the tasks it held stay unacknowledged in Redis
    killed_at = faults.counts(run_id).finished
    faults.start_worker()
    faults.wait_finished(run_id, IMAGES, timeout=300)
    figures = faults.report("SIGKILL a whole worker, start a new one", run_id, 1)
    print(f"finished when killed: {killed_at}; sent again by the sweeper: {faults.sent_again_by_sweeper()}; the other "
          "tasks the dead worker held came back after the visibility timeout")
    assert_nothing_lost_or_doubled(figures)
    assert figures["ok"] == IMAGES and figures["retried"] >= 1

"""Workers killed in the middle of a run: one child, then the whole worker."""

from __future__ import annotations

import signal
import time

import pytest

from tests.faults.figures import (
    IMAGES, assert_nothing_lost_or_doubled, attempts, enqueue_run, report, sent_again_by_sweeper, signal_a_running_task,
)

pytestmark = pytest.mark.slow  # minutes of real faults; CI runs them


def test_a_worker_child_killed_mid_task_loses_nothing(faults):
    worker = faults.start_worker()
    run_id = enqueue_run(faults, "child-killed")
    killed = []
    for progress in (20, 45, 70):  # three times, each a task caught in the middle
        faults.wait_finished(run_id, progress)
        while (hit := signal_a_running_task(faults, run_id, signal.SIGKILL)) is None:
            time.sleep(0.01)
        killed.append(hit)
    faults.wait_finished(run_id, IMAGES)
    figures = report(faults, "SIGKILL one worker child mid-task (x3)", run_id, len(killed))
    assert_nothing_lost_or_doubled(figures)
    tries = attempts(faults, run_id, [image for image, _ in killed])
    print("killed (image, pid):", killed, "their attempts:", tries)
    assert figures["ok"] == IMAGES and all(n >= 2 for n in tries.values())
    assert worker.alive() and len(worker.child_pids()) == 2  # the pool replaced its dead children


def test_a_whole_worker_killed_mid_run_is_taken_over_by_a_new_one(faults):
    first = faults.start_worker()
    run_id = enqueue_run(faults, "worker-killed")
    faults.wait_finished(run_id, 30)
    while signal_a_running_task(faults, run_id, 0) is None:  # signal 0: only make sure a task is mid-way
        time.sleep(0.01)
    first.kill()  # main process and children at once: the tasks it held stay unacknowledged in Redis
    killed_at = faults.counts(run_id).finished
    faults.start_worker()
    faults.wait_finished(run_id, IMAGES, timeout=300)
    figures = report(faults, "SIGKILL a whole worker, start a new one", run_id, 1)
    print(f"finished when killed: {killed_at}; sent again by the sweeper: {sent_again_by_sweeper(faults)}; the other "
          "tasks the dead worker held came back after the visibility timeout")
    assert_nothing_lost_or_doubled(figures)
    assert figures["ok"] == IMAGES and figures["retried"] >= 1

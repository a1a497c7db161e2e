"""The window's split of free places among runs (worker.window.fair_shares), a pure function."""

from __future__ import annotations

from worker.window import fair_shares


def test_free_places_even_out_the_work_in_flight():
    assert fair_shares(4, [30, 8], [0, 0]) == [2, 2]
    assert fair_shares(4, [30, 8], [3, 0]) == [1, 3]  # the run with less in flight catches up first
    assert fair_shares(5, [30, 1], [0, 0]) == [4, 1]  # what a run cannot use goes to the others
    assert fair_shares(3, [0, 0], [2, 2]) == [0, 0]
    assert sum(fair_shares(1000, [600, 600, 600], [0, 0, 0])) == 1000


def test_a_window_that_frees_one_place_at_a_time_still_shares_it():
    """Places freed one by one as tasks finish (a busy machine): the newer run gets its turn, not the oldest every
    time. A long run sent first fills the window of four; a short run of eight arrives; tasks finish in queue order."""
    waiting, in_flight, queue, done = [36, 8], [4, 0], [0, 0, 0, 0], [0, 0]
    while done[1] < 8:
        finished = queue.pop(0)
        in_flight[finished] -= 1
        done[finished] += 1
        for run, share in enumerate(fair_shares(1, waiting, in_flight)):
            waiting[run] -= share
            in_flight[run] += share
            queue += [run] * share
    # the short run's eight, interleaved with as many of the long run's, after the long run's first window
    assert done[0] <= 4 + 8, done

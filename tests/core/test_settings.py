"""The one settings object refuses limits that would let Redis hand a running task to a second worker, or take a
busy worker for a lost one."""

import pytest
from pydantic import ValidationError

from core.settings import Settings


def test_time_limits_must_stay_below_the_visibility_timeout():
    assert Settings(task_soft_time_limit_s=8, task_time_limit_s=10, visibility_timeout_s=20).task_time_limit_s == 10
    for limits in ((10, 8, 20), (8, 30, 20), (8, 10, 10)):
        soft, hard, visibility = limits
        with pytest.raises(ValidationError, match="TASK_SOFT_TIME_LIMIT_S < TASK_TIME_LIMIT_S < VISIBILITY_TIMEOUT_S"):
            Settings(task_soft_time_limit_s=soft, task_time_limit_s=hard, visibility_timeout_s=visibility)


def test_a_worker_is_declared_lost_only_after_several_missed_heartbeats():
    assert Settings(lost_worker_after_s=6).lost_worker_after_s == 6
    with pytest.raises(ValidationError, match="LOST_WORKER_AFTER_S must be at least 6 s"):
        Settings(lost_worker_after_s=5)

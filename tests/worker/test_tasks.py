"""The reason a task stores for a failed image: one line, and the time limit however it was wrapped."""

from __future__ import annotations

from celery.exceptions import SoftTimeLimitExceeded

from core.settings import settings
from worker.tasks import failure_reason


def test_a_time_limit_wrapped_by_a_library_is_still_the_time_limit():
    limit = f"time limit of {settings.task_soft_time_limit_s} s exceeded"
    assert failure_reason(SoftTimeLimitExceeded()) == limit
    try:
        try:
            raise SoftTimeLimitExceeded()
        except Exception as struck:  # what TensorFlow does while binding a tf.function's inputs
            raise TypeError(f"Binding inputs to tf.function failed due to `{struck!r}`. Received args:\n[[0.1, 0.2]]") from struck
    except TypeError as wrapped:
        assert failure_reason(wrapped) == limit


def test_other_failures_keep_their_type_and_first_line():
    reason = failure_reason(ValueError("pixel values span [0, 300]\n" + "array dump\n" * 1000))
    assert reason == "ValueError: pixel values span [0, 300]"
    assert failure_reason(RuntimeError()) == "RuntimeError: "
    assert len(failure_reason(ValueError("x" * 5000))) == 500

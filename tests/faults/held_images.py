"""Imported into the fault tests' worker processes (`celery worker --include tests.faults.held_images`): the first
deliveries of the images named in HELD_IMAGES ({image id: how many deliveries}) stop in the middle of their
explanation (the row claimed, nothing saved) until the test releases them. The test strikes such a process (kills it,
stops it, lets its time limit pass) on the event "this image is held by this process", so that no task can finish
before the test has acted, however fast or slow the machine. Without HELD_IMAGES nothing changes.

A hold is a file HOLDS_DIR/<image id>-<delivery>.held holding the pid; the test releases it by making the same name
with .go. The worker's own engine runs once it is released."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import worker.tasks as tasks

HELD = {int(image_id): times for image_id, times in json.loads(os.environ.get("HELD_IMAGES", "{}")).items()}
FOLDER = Path(os.environ.get("HOLDS_DIR", "."))
LONGEST_HOLD_S = 600  # a test that died leaves no worker waiting for ever

_claim_explain_save, _explain = tasks._claim_explain_save, tasks.explain
_image: int | None = None  # the image this process is explaining


def claim_explain_save(session, run_id: int, image_id: int, host: str) -> str:
    global _image
    _image = image_id
    try:
        return _claim_explain_save(session, run_id, image_id, host)
    finally:
        _image = None


def explain(*args, **kwargs):
    if _image in HELD:
        hold(_image, HELD[_image])
    return _explain(*args, **kwargs)


def hold(image_id: int, times: int) -> None:
    for delivery in range(1, times + 1):
        name = FOLDER / f"{image_id}-{delivery}"
        try:  # the first process to make this file holds this delivery
            os.close(os.open(name.with_suffix(".taken"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            continue
        name.with_suffix(".part").write_text(str(os.getpid()))
        name.with_suffix(".part").replace(name.with_suffix(".held"))  # whole when the test sees it
        released = name.with_suffix(".go")
        deadline = time.monotonic() + LONGEST_HOLD_S
        while not released.exists() and time.monotonic() < deadline:
            time.sleep(0.01)  # the soft time limit, when it strikes, is raised here, as in a slow explanation
        return


if HELD:
    tasks._claim_explain_save, tasks.explain = claim_explain_save, explain

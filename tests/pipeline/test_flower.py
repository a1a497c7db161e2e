"""Flower, with basic auth, watching the real workers of a small job, including a worker started after it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import requests

from tests.services import REPO, spare_port
from tests.stack import on_backend
from tests.waiting import wait_until

pytestmark = on_backend("postgresql")


def test_flower_shows_the_workers_and_tasks_only_to_its_users(stack, tmp_path):
    port = spare_port()
    auth = ("watcher", "p4ss-word")
    flower = subprocess.Popen(  # compose's command for Flower
        [sys.executable, "-m", "worker.monitor", f"--port={port}", "--address=127.0.0.1"],
        cwd=REPO, env={**os.environ, **stack.env, "FLOWER_BASIC_AUTH": f"{auth[0]}:{auth[1]}"},
        stdout=open(tmp_path / "flower.log", "wb"), stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def listed() -> str:
        return " ".join(requests.get(f"{base}/api/workers", auth=auth, timeout=10).json())  # no ?refresh

    try:
        wait_until(lambda: requests.get(f"{base}/api/workers", auth=auth, timeout=10).status_code == 200, "flower")
        late = stack.start_worker()  # Flower first, this worker second: it answers pings when this returns
        started = time.monotonic()
        wait_until(lambda: late.name.split("@")[0] in listed(), "the late worker in Flower's list", timeout=10)
        print(f"the worker started after Flower was listed {time.monotonic() - started:.1f} s after it was up")
        stack.retire(late)
        stack.enqueue("--dataset", "rectangles", "--limit", "3", "--name", "watched", "--wait")
        assert stack.worker.name.split("@")[0] in listed()

        def all_tasks_seen() -> bool:
            tasks = requests.get(f"{base}/api/tasks", auth=auth, timeout=10).json()
            mine = [t for t in tasks.values() if t["name"] == "worker.tasks.explain_image" and t["state"] == "SUCCESS"]
            return len(mine) >= 3

        wait_until(all_tasks_seen, "the job's tasks in flower", timeout=30)
        for path in ("/api/workers", "/api/tasks", "/"):
            assert requests.get(f"{base}{path}", timeout=10).status_code == 401
            assert requests.get(f"{base}{path}", auth=("watcher", "wrong"), timeout=10).status_code == 401
    finally:
        flower.terminate()
        flower.wait(30)

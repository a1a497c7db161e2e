"""Closed to strangers: a pickled message is refused and runs nothing; hostile names and labels are data."""

from __future__ import annotations

import json
import pickle

import numpy as np
from kombu import Connection, Exchange, Producer
from PIL import Image
from sqlalchemy import func, select

from db import reads
from db.models import Explanation, Run
from tests.stack import run_id_of
from tests.waiting import wait_for_run, wait_until
from worker.messages import EXPLAIN_TASK


def test_a_pickled_message_is_refused_and_nothing_runs(stack, tmp_path):
    marker = tmp_path / "pickle-ran"

    class Payload:  # unpickling this would create the marker file
        def __reduce__(self):
            return (open, (str(marker), "w"))

    with stack.session() as session:
        before = session.scalar(select(func.count()).select_from(Explanation))
    body = pickle.dumps(((1, 1), {}, {"payload": Payload()}))
    with Connection(stack.env["CELERY_BROKER_URL"]) as connection:
        Producer(connection).publish(
            body, routing_key="celery", exchange=Exchange("celery", type="direct"), serializer=None,
            content_type="application/x-python-serialize", content_encoding="binary",
            headers={"lang": "py", "task": EXPLAIN_TASK, "id": "pickled-1", "argsrepr": "", "kwargsrepr": ""},
        )
    log = stack.worker.log
    wait_until(lambda: "disallowed" in log.read_text(errors="replace").lower(), "the worker refusing the message")
    assert not marker.exists()
    with stack.session() as session:
        assert session.scalar(select(func.count()).select_from(Explanation)) == before


def test_hostile_names_and_labels_are_only_data(stack, tmp_path):
    hostile = "x'); DROP TABLE runs; --"
    labels = ["cat'; DROP TABLE run_classes; --", 'dog" OR "1"="1']
    folder = tmp_path / "hostile"
    rng = np.random.default_rng(3)
    for name in labels:
        (folder / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / name / f"{i}'b\";.png")
    model = tmp_path / "no-metadata.keras"  # without class names, the folder names become the labels
    model.write_bytes(stack.model.read_bytes())
    run_id = run_id_of(stack.cli(
        "producer", "enqueue", "--folder", str(folder), "--model", str(model), "--num-samples", "100",
        "--name", hostile,
    ).stdout)
    wait_for_run(stack.session, run_id)
    for command in (["producer", "status", hostile], ["db", "misclassified", "--run", hostile, "--format", "json"],
                    ["db", "runs"], ["db", "compare", hostile, hostile, "--format", "json"]):
        stack.cli(*command)
    shown = json.loads(stack.cli("db", "misclassified", "--run", hostile, "--format", "json").stdout)
    assert {row["true_label"] for row in shown} <= set(labels) and {row["predicted_label"] for row in shown} <= set(labels)
    with stack.session() as session:
        assert {c["true_label"] for c in reads.confusion(session, run_id)} == set(labels)
    refused = stack.cli("db", "misclassified", "--run", "1 OR 1=1", check=False)
    assert refused.returncode != 0 and "no run with id or name '1 OR 1=1'" in refused.stderr
    with stack.session() as session:
        assert session.scalar(select(Run.name).where(Run.id == run_id)) == hostile
        assert session.scalar(select(func.count()).select_from(Run)) >= 1  # the table is still there

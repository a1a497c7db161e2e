"""Producer -> Redis -> real celery workers -> SQL, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from sqlalchemy import func, select, text

from db import reads, runs

from db.formats import decode_segments
from db.models import Explanation, Image, Run, RunImage, SegmentWeight
from tests.conftest import run_cli
from tests.stack import flat, on_backend, run_id_of
from tests.waiting import broker_idle, wait_for_run, wait_until
from worker.messages import EXPLAIN_TASK


def rows_per_image(stack, run_id: int) -> dict[int, int]:
    with stack.session() as session:
        members = session.scalars(select(RunImage.image_id).where(RunImage.run_id == run_id)).all()
        counted = {
            image_id: n
            for image_id, n in session.execute(
                select(Explanation.image_id, func.count()).where(Explanation.run_id == run_id).group_by(Explanation.image_id)
            )
        }
    return {image_id: counted.get(image_id, 0) for image_id in members}


def test_enqueue_explains_every_image_exactly_once(stack, first):
    run_id, result = first
    assert "accuracy" in result.stdout and "misclassified" in result.stdout
    assert set(rows_per_image(stack, run_id).values()) == {1}
    with stack.session() as session:
        run = session.get(Run, run_id)
        assert run.status == "done" and run.finished_at is not None and run.image_count == 12
        rows = session.scalars(select(Explanation).where(Explanation.run_id == run_id)).all()
        assert {row.status for row in rows} == {"ok"}
        # auto: one choice on this machine (its processes share it), said by the input check, and every row made by it
        choice = run.input_check["runtime"]
        assert run.runtime == "auto" and choice["runtime"] in ("keras", "openvino") and choice["max_prob_diff"] <= 1e-5
        assert {row.runtime for row in rows} == {choice["runtime"]}
        assert choice["line"].removeprefix("runtime ") in result.stdout  # the summary's runtime row
        for row in rows:
            assert row.attempts == 1 and row.worker_host and row.timings["model_s"] > 0
            assert row.correct == (row.predicted_label == row.true_label)
            assert abs(sum(row.probabilities) - 1) < 1e-6 and row.confidence == max(row.probabilities)
            areas = session.execute(
                select(SegmentWeight.label, func.sum(SegmentWeight.area)).where(SegmentWeight.explanation_id == row.id)
                .group_by(SegmentWeight.label)
            ).all()
            assert areas and all(total == 64 * 64 for _, total in areas)
            assert decode_segments(row.segments).shape == (64, 64)


def test_the_views_return_what_the_rows_say(stack, first):
    run_id, _ = first
    with stack.session() as session:
        rows = session.scalars(select(Explanation).where(Explanation.run_id == run_id)).all()
        names = session.get(Run, run_id).class_names
        wrong = sorted(r.image_id for r in rows if not r.correct)
        view = reads.misclassified(session, run_id)
        assert sorted(r["image_id"] for r in view) == wrong
        for entry in view:
            row = next(r for r in rows if r.image_id == entry["image_id"])
            assert entry["true_label"] == names[row.true_label] and entry["predicted_label"] == names[row.predicted_label]
            assert entry["confidence"] == row.confidence and entry["deletion_auc"] == row.deletion_auc
        confusion = reads.confusion(session, run_id)
        assert sum(c["n"] for c in confusion) == len(rows)
        for cell in confusion:
            expected = sum(1 for r in rows if names[r.true_label] == cell["true_label"] and names[r.predicted_label] == cell["predicted_label"])
            assert cell["n"] == expected
    listed = json.loads(stack.cli("db", "misclassified", "--run", str(run_id), "--format", "json").stdout)
    assert [r["image_id"] for r in listed] == [r["image_id"] for r in view]
    csv_lines = stack.cli("db", "misclassified", "--run", str(run_id), "--format", "csv").stdout.strip().splitlines()
    assert csv_lines[0].startswith("image_id,source,true_label") and len(csv_lines) == len(view) + 1
    assert "first" in stack.cli("db", "runs").stdout


def test_a_task_delivered_twice_leaves_one_row(stack):
    run_id = run_id_of(stack.enqueue("--dataset", "rectangles", "--limit", "4", "--name", "twice").stdout)
    with stack.session() as session:
        images = session.scalars(select(RunImage.image_id).where(RunImage.run_id == run_id)).all()
    for image_id in images:  # every task delivered twice more, while the first deliveries run
        for _ in range(2):
            stack.celery.send_task(EXPLAIN_TASK, args=[run_id, image_id])
    wait_for_run(stack.session, run_id)
    wait_until(lambda: broker_idle(stack.env["CELERY_BROKER_URL"]), "the duplicate deliveries handled")
    assert set(rows_per_image(stack, run_id).values()) == {1}
    with stack.session() as session:
        assert session.scalar(select(func.count()).select_from(Explanation).where(Explanation.run_id == run_id)) == 4


def test_a_broken_image_is_stored_as_failed_and_the_run_completes(stack, first):
    with stack.session() as session:
        good = session.get(Run, first[0])
        run = runs.create_run(
            session, name="broken", model_path=good.model_path, model_sha256=good.model_sha256,
            class_names=good.class_names, params=good.params, source="test", value_range=good.value_range,
        )
        images = session.scalars(select(RunImage).where(RunImage.run_id == good.id).order_by(RunImage.position).limit(3)).all()
        for position, member in enumerate(images):
            session.add(RunImage(run_id=run.id, image_id=member.image_id, position=position, true_label=member.true_label))
        broken = Image(sha256="0" * 64, source="broken.png", width=64, height=64, channels=3, png=b"\x89PNG garbage")
        session.add(broken)
        session.flush()
        session.add(RunImage(run_id=run.id, image_id=broken.id, position=3, true_label=0))
        run.image_count = run.next_position = 4  # every task sent by hand below, none left for the window
        run.status = "running"  # as the producer leaves it once every image is stored
        session.commit()
        run_id, broken_id, member_ids = run.id, broken.id, [m.image_id for m in images]
    for image_id in member_ids + [broken_id]:
        stack.celery.send_task(EXPLAIN_TASK, args=[run_id, image_id])
    counts = wait_for_run(stack.session, run_id)
    assert (counts.ok, counts.failed) == (3, 1)
    with stack.session() as session:
        failed = session.scalars(select(Explanation).where(Explanation.run_id == run_id, Explanation.status == "failed")).one()
        assert failed.image_id == broken_id and "UnidentifiedImageError" in failed.error
        assert session.get(Run, run_id).status == "done"
    status = stack.cli("producer", "status", "broken").stdout
    assert re.search(r"failed\W+1\b", status) and re.search(r"status\W+done", status)


@on_backend("sqlite")
def test_resume_completes_a_run_whose_queue_was_lost(stack):
    import redis

    stack.worker.stop()
    run_id = run_id_of(stack.enqueue("--dataset", "rectangles", "--limit", "6", "--name", "lost").stdout)
    redis.Redis.from_url(stack.env["CELERY_BROKER_URL"]).flushdb()  # the broker lost its queue
    stack.start_worker()  # it answers a ping: it is taking tasks, and there are none
    assert broker_idle(stack.env["CELERY_BROKER_URL"])
    with stack.session() as session:
        assert reads.run_counts(session, run_id).finished == 0  # nothing left to deliver
    result = stack.cli("producer", "resume", "lost", "--wait")
    assert "6 images sent again" in result.stdout
    assert set(rows_per_image(stack, run_id).values()) == {1}
    with stack.session() as session:
        assert reads.run_counts(session, run_id).ok == 6
    assert "0 images sent again" in stack.cli("producer", "resume", "lost").stdout


@on_backend("sqlite")
def test_tensorflow_lives_only_in_the_worker_children(stack):
    def maps(pid: int) -> str:
        return Path(f"/proc/{pid}/maps").read_text()

    children = stack.worker.child_pids()
    assert len(children) == 2
    assert "libtensorflow" not in maps(stack.worker.process.pid)
    assert all("libtensorflow" in maps(pid) for pid in children)


def test_the_documented_queries_run_on_this_database(stack, first):
    page = (Path(__file__).resolve().parents[2] / "docs" / "sql.md").read_text()
    # docs/sql.md's queries name run 1: here they ask for the run this test made
    documented_queries = [
        sql.replace("run_id = 1", f"run_id = {first[0]}") for sql in re.findall(r"```sql\n(.*?)```", page, flags=re.S)
    ]
    assert len(documented_queries) >= 5 and all(f"run_id = {first[0]}" in sql for sql in documented_queries)
    with stack.session() as session:
        for sql in documented_queries:
            session.execute(text(sql)).all()
        mistakes = session.execute(text(documented_queries[0])).all()
        assert len(mistakes) == len(reads.misclassified(session, first[0])[:10])


@on_backend("sqlite")
def test_a_model_file_replaced_after_enqueue_does_not_change_the_run(stack, first, tmp_path):
    import shutil

    copy = tmp_path / "mine.keras"
    shutil.copy(stack.model, copy)
    shutil.copy(stack.model.with_suffix(".json"), copy.with_suffix(".json"))
    run_id = run_id_of(stack.cli(
        "producer", "enqueue", "--model", str(copy), "--num-samples", "200", "--dataset", "rectangles",
        "--limit", "12", "--name", "replaced",
    ).stdout)
    copy.write_bytes(b"not a model any more")  # the user's file changes while the run goes on
    wait_for_run(stack.session, run_id)
    with stack.session() as session:
        predictions = {
            run: {r.image_id: (r.status, r.predicted_label, r.probabilities) for r in session.scalars(
                select(Explanation).where(Explanation.run_id == run))}
            for run in (first[0], run_id)
        }
    assert predictions[run_id] == predictions[first[0]]  # same stored model (by sha256), same results


def test_a_run_without_labels_shows_the_predicted_classes_not_an_accuracy(stack, tmp_path):
    import numpy as np

    from models.datasets import make_rectangles

    images, _ = make_rectangles(6, seed=5)
    np.savez(tmp_path / "unlabelled.npz", X=images)  # no y
    out = stack.enqueue("--npz", str(tmp_path / "unlabelled.npz"), "--name", "unlabelled", "--wait").stdout
    with stack.session() as session:
        run_id = reads.find_run(session, "unlabelled").id
        predicted = reads.predicted_classes(session, run_id)
        assert reads.run_counts(session, run_id).accuracy is None and reads.misclassified(session, run_id) == []
    assert sum(n for _, n in predicted) == 6 and {name for name, _ in predicted} <= {"rectangle", "no_rectangle"}
    shown = ", ".join(f"{name}: {n}" for name, n in predicted)
    for text_ in (out, stack.cli("producer", "status", "unlabelled").stdout):
        assert re.search(r"accuracy\W+n/a \(no true labels\)", text_)
        assert re.search(rf"predicted classes +{re.escape(shown)}", text_)
        assert "misclassified" not in text_ and "0.00%" not in text_
    report = tmp_path / "report.html"
    stack.cli("db", "report", "--run", "unlabelled", "-o", str(report))
    page = report.read_text()
    assert "n/a (no true labels)" in page and shown in page and "No true labels: nothing is known to be misclassified" in page
    runs = run_cli("db", "runs", env={**stack.env, "COLUMNS": "200"}).stdout
    assert re.search(rf"{run_id}\W+unlabelled\W+done\W+6\W+6\W+0\W+n/a", runs)


def test_faithfulness_and_stability_are_stored_and_shown(stack):
    out = stack.enqueue("--dataset", "rectangles", "--limit", "3", "--stability", "2", "--hide", "grey",
                        "--name", "stable", "--wait").stdout
    assert "stability over 2 more seeds" in out and "faithfulness (mean)" in out
    with stack.session() as session:
        run = reads.find_run(session, "stable")
        rows = session.scalars(select(Explanation).where(Explanation.run_id == run.id)).all()
        assert run.params["hide"] == "grey" and run.params["stability_seeds"] == 2
    assert len(rows) == 3
    for row in rows:
        assert 0 <= row.deletion_auc <= 1 and 0 <= row.insertion_auc <= 1 and 0 <= row.stability <= 1
        assert row.auc_reference.startswith("deletion to black")
    shown = stack.cli("db", "show", "--run", "stable", str(rows[0].image_id)).stdout
    assert "insertion AUC" in shown and "stability" in shown and "not a quality figure" in shown
    with stack.session() as session:
        columns = session.execute(text("SELECT * FROM misclassifications LIMIT 0")).keys()
    assert {"deletion_auc", "insertion_auc", "stability"} <= set(columns)


@on_backend("sqlite")
def test_the_article_preset_is_one_option_away(stack):
    out = stack.enqueue("--dataset", "rectangles", "--limit", "2", "--preset", "article", "--name", "article").stdout
    assert "explaining with: quickshift k=4, mean, 200 samples" in out  # --num-samples 200 wins over the preset
    with stack.session() as session:
        params = reads.find_run(session, "article").params
    assert (params["segmentation"], params["hide"], params["kernel_size"]) == ("quickshift", "mean", 4)
    refused = stack.cli("producer", "enqueue", "--preset", "fast", check=False)
    assert refused.returncode == 2 and "unknown --preset 'fast'" in refused.stderr


@on_backend("sqlite")
def test_auto_samples_are_recorded_per_image_and_their_spread_shown(stack, tmp_path):
    from worker.engine.stopping import AUTO_CAP, AUTO_FIRST

    out = stack.enqueue("--dataset", "rectangles", "--limit", "4", "--num-samples", "auto", "--name", "auto",
                        "--wait").stdout
    assert "samples until settled (auto)" in out
    with stack.session() as session:
        run = reads.find_run(session, "auto")
        rows = session.scalars(select(Explanation).where(Explanation.run_id == run.id)).all()
    assert run.params["num_samples"] == "auto" and len(rows) == 4
    for row in rows:
        assert row.sampling_stop in ("settled", "cap") and AUTO_FIRST < row.samples_used <= AUTO_CAP + 1
        assert (row.samples_used - 1) % 16 == 0 and 0 < row.model_calls <= row.samples_used  # whole Hadamard blocks
    used = sorted(row.samples_used for row in rows)
    spread = f"samples {used[0]} to {used[-1]} (median {float(np.median(used)):g})"
    status = flat(stack.cli("producer", "status", "auto").stdout)
    assert re.search(rf"model calls \d+ per image on average; {re.escape(spread)}", status), status
    report = tmp_path / "report.html"
    stack.cli("db", "report", "--run", "auto", "-o", str(report))
    assert spread in report.read_text()
    bad = stack.enqueue("--dataset", "rectangles", "--num-samples", "many", check=False)
    assert bad.returncode == 2 and "--num-samples must be a whole number or auto, got 'many'" in bad.stderr


@on_backend("sqlite")
def test_a_model_openvino_cannot_convert_runs_whole_on_keras_saying_why(stack, tmp_path):
    """--runtime openvino asked for a model whose op OpenVINO has no rule for: the run is not lost, it runs on Keras,
    and the input check, the rows and the summary say why."""
    from tests.models.test_runtimes import a_model_openvino_cannot_convert

    model = a_model_openvino_cannot_convert(tmp_path / "counts.keras", side=32)
    npz = tmp_path / "four.npz"
    np.savez(npz, X=np.random.default_rng(0).random((4, 32, 32, 3)).astype(np.float32), y=np.array([0, 1, 0, 1]))
    result = stack.cli("producer", "enqueue", "--npz", str(npz), "--model", str(model), "--runtime", "openvino",
                       "--num-samples", "64", "--name", "unconvertible", "--wait")
    run_id = run_id_of(result.stdout)
    with stack.session() as session:
        run = session.get(Run, run_id)
        rows = session.scalars(select(Explanation).where(Explanation.run_id == run_id)).all()
        assert run.runtime == "openvino" and run.status == "done"
        line = run.input_check["runtime"]["line"]
        assert line.startswith("runtime keras: the OpenVINO conversion failed") and "DenseBincount" in line
        assert {(row.status, row.runtime) for row in rows} == {("ok", "keras")}
    assert "keras: the OpenVINO conversion failed" in flat(result.stdout)

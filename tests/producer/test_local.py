"""`python -m producer local`: the whole job with no Redis, no PostgreSQL and no Docker."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from tests.services import REPO
from tests.waiting import wait_until
from tests.conftest import run_cli


def local_env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env["DATA_DIR"] = str(tmp_path / "data")
    return env


def local_workers(tmp_path) -> list[int]:
    """The pids of `producer local` worker processes on this test's DATA_DIR (other tests may run theirs meanwhile)."""
    mine = f"DATA_DIR={(tmp_path / 'data').resolve()}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if b"-n\0local@" in (proc / "cmdline").read_bytes() and mine in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except (OSError, ValueError):  # not a process, or one that ended meanwhile
            continue
    return found


def results(tmp_path, sql: str) -> list:
    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'results.db'}")
    with engine.connect() as connection:
        rows = connection.execute(text(sql)).all()
    engine.dispose()
    return rows


BOX_DRAWING = re.compile("[\u2500-\u259f]")  # rich's borders and bars


def test_local_runs_the_whole_job_on_a_bare_machine_and_its_piped_output_is_plain_and_whole(tmp_path):
    """Nothing running, no model: it trains one, starts workers, explains, stops them, reports; its stdout is a pipe,
    as in `python -m producer local --limit 20 | cat`: plain lines, no borders, every header and value whole."""
    from db.reads import MISCLASSIFIED_COLUMNS

    result = subprocess.run(
        [sys.executable, "-m", "producer", "local", "--limit", "20", "--num-samples", "200", "--workers", "2"],
        cwd=REPO, env={**local_env(tmp_path), "COLUMNS": "80"}, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "training it" in out and "misclassified in run 1" in out
    assert f"results: sqlite:///{tmp_path / 'data' / 'results.db'}  (python -m db misclassified --run 1)" in out
    assert (tmp_path / "data" / "broker.db").exists()  # the embedded broker
    assert results(tmp_path, "SELECT status, COUNT(*) FROM explanations GROUP BY status") == [("ok", 20)]
    assert not local_workers(tmp_path)
    assert not BOX_DRAWING.search(out), out
    lines = out.splitlines()
    if "misclassified in run 1: none" not in lines:
        header = lines[lines.index("misclassified in run 1") + 1]
        assert header.split() == list(MISCLASSIFIED_COLUMNS)  # every column's name whole, on one line
    runs = run_cli("db", "runs", env=local_env(tmp_path)).stdout.splitlines()  # as in `python -m db runs | cat`
    name = results(tmp_path, "SELECT name FROM runs")[0][0]
    assert runs[1].split()[:2] == ["id", "name"] and runs[2].split()[:2] == ["1", name], runs
    assert re.search(r"^  explained with +felzenszwalb scale=25, grey, 200 samples, hadamard masks, shrunk fit$", out, re.M)
    assert "run 1: 20 of 20 done, 0 failed, 0 remaining" in out  # the progress, as plain lines


# Far more than the workers can hold when the Ctrl-C comes (a running and a reserved task per process: prefetch 1);
# the run cannot end by itself meanwhile, as its workers are frozen from the third image on
IMAGES = 40


def test_ctrl_c_stops_the_workers_and_leaves_the_run_resumable(tmp_path, rectangles_model):
    models = tmp_path / "data" / "models"
    models.mkdir(parents=True)
    shutil.copy(rectangles_model, models / "rectangles.keras")
    shutil.copy(rectangles_model.with_suffix(".json"), models / "rectangles.json")
    env = local_env(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "producer", "local", "--limit", str(IMAGES), "--num-samples", "200", "--workers", "2"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # as from a terminal: the pytest process may have SIGINT ignored (left so by code run in it before), and a
        # child inherits that; it would never see the Ctrl-C
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )

    def explained() -> int:
        try:
            return results(tmp_path, "SELECT COUNT(*) FROM explanations WHERE status = 'ok'")[0][0]
        except OperationalError:  # the database file is there, its tables not yet
            return 0

    # The worker's processes frozen, the run cannot end by itself before the Ctrl-C, however fast the machine; they
    # go on once it is sent, so the workers' warm shutdown finishes the tasks they hold. Their pids are known before
    # the run starts, so that they are frozen the moment three images are explained (not a /proc scan later).
    frozen = wait_until(lambda: len(pids := local_workers(tmp_path)) == 3 and pids, "the main process and its children",
                        timeout=180)
    wait_until(lambda: (tmp_path / "data" / "results.db").exists() and explained() >= 3, "three images explained",
               timeout=180, every=0.01)
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    assert process.poll() is None and explained() < IMAGES, "the run ended before its workers were frozen"
    process.send_signal(signal.SIGINT)
    for pid in frozen:
        os.kill(pid, signal.SIGCONT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "resumable: python -m producer local --resume 1" in out.replace("\n", " ")
    assert not local_workers(tmp_path)
    finished = results(tmp_path, "SELECT COUNT(*) FROM explanations WHERE status = 'ok'")[0][0]
    assert 3 <= finished < IMAGES

    resumed = run_cli("producer", "local", "--resume", "1", "--workers", "2", env=env)
    assert "misclassified in run 1" in resumed.stdout
    per_image = results(tmp_path, "SELECT image_id, COUNT(*) FROM explanations WHERE run_id = 1 GROUP BY image_id")
    assert len(per_image) == IMAGES and {n for _, n in per_image} == {1}
    assert results(tmp_path, "SELECT COUNT(*) FROM explanations WHERE status = 'ok'")[0][0] == IMAGES


def test_a_real_size_model_on_photos_of_mixed_sizes(tmp_path):
    """MobileNetV2 at 224x224 with 1000 classes on scikit-image's bundled photos (JPEG, grey and colour, several
    sizes) in folders named by WordNet id, with its class names in a file: on the runtime auto chose, said."""
    import keras
    import skimage.data
    from PIL import Image

    model = tmp_path / "mobilenet.keras"
    keras.applications.MobileNetV2(weights=None, classes=1000).save(model)
    photos = {"n02123045": ["chelsea", "horse"], "n03063599": ["coffee", "rocket"], "n09999999": ["hubble_deep_field", "moon"]}
    names = tmp_path / "LOC_synset_mapping.txt"
    names.write_text("".join(f"{wordnet} class {i}\n" for i, wordnet in enumerate(sorted(photos) + [
        f"n{i:08d}" for i in range(997)])))
    for label, files in photos.items():
        (tmp_path / "photos" / label).mkdir(parents=True)
        for name in files:
            pixels = getattr(skimage.data, name)()
            pixels = (pixels * 255).astype("uint8") if pixels.dtype == bool else pixels
            Image.fromarray(pixels).save(tmp_path / "photos" / label / f"{name}.jpg", quality=90)
    result = subprocess.run(
        [sys.executable, "-m", "producer", "local", "--folder", str(tmp_path / "photos"), "--model", str(model),
         "--class-names-file", str(names),
         # one worker process: a second would pay TensorFlow's import and MobileNetV2's load again for 3 images
         "--resize", "--preprocess", "mobilenet_v2", "--num-samples", "30", "--workers", "1"],
        cwd=REPO, env={**local_env(tmp_path), "COLUMNS": "200"}, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "resized 6 images to 224x224" in result.stdout
    # auto: OpenVINO converted and checked against Keras on the input check's images, and the choice said
    assert re.search(r"^runtime (openvino|keras): .*max \|dp\| \S+ on 6 images", result.stdout, re.M), result.stdout
    chosen = re.search(r"^runtime (openvino|keras):", result.stdout, re.M)[1]
    assert results(tmp_path, "SELECT DISTINCT runtime FROM explanations") == [(chosen,)]
    assert results(tmp_path, "SELECT DISTINCT true_label FROM run_images ORDER BY 1") == [(0,), (1,), (2,)]
    assert re.search(r"run 1: 6 of 6 done, 0 failed, 0 remaining, \d+\.\d (s/img|img/s), ETA 0:00:00", result.stdout)
    assert "pixels 0..255, preprocess mobilenet_v2, outputs probabilities" in result.stdout
    assert results(tmp_path, "SELECT status, COUNT(*) FROM explanations GROUP BY status") == [("ok", 6)]
    assert results(tmp_path, "SELECT DISTINCT n_segments > 1 FROM explanations") == [(1,)]
    # An untrained network gives every photo the same probabilities: said, not hidden.
    assert "WARNING" in result.stdout and "never learned to tell these images apart" in result.stdout
    assert not local_workers(tmp_path)


def test_the_progress_figures_suit_slow_and_fast_images():
    from producer.cli import progress_figures

    assert progress_figures(0, 10, 5.0) == ("", "?")  # nothing finished yet: no rate, no guess
    assert progress_figures(2, 4, 54.0) == ("27.0 s/img", "0:01:48")  # seconds-long images
    assert progress_figures(100, 300, 10.0) == ("10.0 img/s", "0:00:30")

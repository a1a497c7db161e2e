"""Bad input to the producer: a one-line error, a non-zero exit, and nothing half-written."""

from __future__ import annotations

import html
import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import create_engine, text

from tests.conftest import invoke, run_python
from tests.producer.conftest import assert_refused, stored_rows
from tests.services import redis_database


def assert_listed(result, *messages: str) -> list[str]:
    """Refused with every unusable image listed, one line each, and a hint; returns the listed lines."""
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert re.match(r"error: \d+ of \d+ images cannot be explained \(nothing was stored\):$", lines[0]), result.stderr
    assert lines[-1].startswith("hint: fix or remove them and run again, or add --skip-bad"), result.stderr
    listed = lines[1:-1]
    for message in messages:
        assert sum(message in line for line in listed) == 1, (message, result.stderr)
    return listed


def save_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_bad_sources_and_models_are_refused_and_nothing_is_stored(env, tmp_path, rectangles_model):
    model = ["--model", str(rectangles_model)]
    empty = tmp_path / "empty"
    empty.mkdir()
    no_images = tmp_path / "no_images"
    (no_images / "cat").mkdir(parents=True)
    not_image = tmp_path / "not_image"
    save_png(not_image / "rectangle" / "ok.png", np.zeros((64, 64, 3), np.uint8))
    (not_image / "rectangle" / "notes.png").write_text("this is text, not a PNG")
    wrong_class = tmp_path / "wrong_class"
    save_png(wrong_class / "zebra" / "a.png", np.zeros((64, 64, 3), np.uint8))
    corrupt_model = tmp_path / "corrupt.keras"
    corrupt_model.write_bytes(b"garbage")

    cases = [
        (["--folder", str(tmp_path / "missing"), *model], "folder not found"),
        (["--folder", str(empty), *model], "has no class sub-folders"),
        (["--folder", str(no_images), *model], "has no PNG or JPEG images"),
        (["--folder", str(wrong_class), *model], "not among the model's 2 class names ('rectangle', 'no_rectangle'): 'zebra'; name the folders"),
        (["--folder", str(not_image)], "--model is required"),
        (["--dataset", "rectangles", "--model", str(tmp_path / "nope.keras")], "model file not found"),
        (["--dataset", "rectangles", "--model", str(corrupt_model)], "is not a Keras 3 .keras model archive"),
        (["--npz", str(tmp_path / "none.npz"), *model], "file not found"),
        (["--dataset", "cifar"], "unknown data set 'cifar'"),
        (["--dataset", "rectangles", "--folder", str(empty)], "give one source"),
        (["--dataset", "rectangles", "--segmentation", "grid", *model], "segmentation must be"),
        (["--dataset", "rectangles", "--design", "sobol", *model], "design must be one of independent, paired, hadamard"),
        (["--dataset", "rectangles", "--estimator", "shap", *model], "estimator must be one of lime, adjusted"),
        (["--dataset", "rectangles", "--limit", "0", *model], "--limit must be at least 1"),
    ]
    for args, message in cases:
        assert_refused(invoke("producer", "enqueue", *args, check=False, env=env), message)
    assert_listed(
        invoke("producer", "enqueue", "--folder", str(not_image), *model, check=False, env=env),
        "rectangle/notes.png: not a readable image",
    )
    assert stored_rows(env) == {"runs": 0, "images": 0, "run_images": 0}


def test_no_broker_means_a_clear_error_and_no_run(env, rectangles_model):
    no_broker = {**env, "CELERY_BROKER_URL": "redis://127.0.0.1:1/0"}
    result = invoke("producer", "enqueue", "--dataset", "rectangles", "--limit", "3", "--model", str(rectangles_model),
                     check=False, env=no_broker)
    assert_refused(result, "cannot reach the broker at redis://127.0.0.1:1/0")
    assert stored_rows(env)["runs"] == 0


def test_folder_and_npz_sources_create_runs_without_tensorflow(env, tmp_path, rectangles_model):
    folder = tmp_path / "images"
    rng = np.random.default_rng(0)
    for name in ("no_rectangle", "rectangle"):
        for i in range(2):
            save_png(folder / name / f"{i}.png", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    npz = tmp_path / "set.npz"
    np.savez(npz, X=rng.random((3, 64, 64, 3)).astype(np.float32), y=np.array([0, 1, 1]))
    # TensorFlow made unimportable: the producer must not need it
    script = (
        "import sys, runpy; sys.modules['tensorflow'] = None; sys.modules['keras'] = None; "
        "sys.argv = ['producer'] + sys.argv[1:]; runpy.run_module('producer', run_name='__main__')"
    )
    for args in (["--folder", str(folder)], ["--npz", str(npz)]):
        result = run_python("-c", script, "enqueue", *args, "--model", str(rectangles_model), env=env)
        assert "images stored" in result.stdout
    engine = create_engine(env["DATABASE_URL"])
    with engine.connect() as connection:
        runs = connection.execute(text("SELECT id, image_count FROM runs ORDER BY id")).all()
        labels = connection.execute(
            text("SELECT ri.true_label, i.true_label FROM run_images ri JOIN images i ON i.id = ri.image_id WHERE ri.run_id = :r ORDER BY ri.position"),
            {"r": runs[0][0]},
        ).all()
    engine.dispose()
    assert [count for _, count in runs] == [4, 3]
    # folder names are matched to the model's class names, not to their sorted order
    assert labels == [(1, "no_rectangle"), (1, "no_rectangle"), (0, "rectangle"), (0, "rectangle")]


def png_bomb(path, width: int = 100_000, height: int = 100_000) -> None:
    """A tiny PNG whose header claims width x height pixels (10 gigapixels by default)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def one_bad_file(tmp_path, name: str, write) -> str:
    folder = tmp_path / name.replace(".", "_")
    save_png(folder / "rectangle" / "good.png", np.zeros((64, 64, 3), np.uint8))
    write(folder / "rectangle" / name)
    return str(folder)


def test_hostile_files_are_refused_by_name_and_nothing_is_stored(env, tmp_path, rectangles_model):
    model = ["--model", str(rectangles_model)]
    jpeg = tmp_path / "full.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(jpeg, quality=90)
    lambda_model = tmp_path / "lambda.keras"
    import keras

    keras.Sequential([
        keras.Input((64, 64, 3)), keras.layers.Lambda(lambda x: x * 2), keras.layers.Flatten(),
        keras.layers.Dense(1, activation="sigmoid"),
    ]).save(lambda_model)
    cases = [
        (one_bad_file(tmp_path, "empty.png", lambda p: p.write_bytes(b"")), "empty.png: not a readable image"),
        (one_bad_file(tmp_path, "text.png", lambda p: p.write_text("hello")), "text.png: not a readable image"),
        (one_bad_file(tmp_path, "cut.jpg", lambda p: p.write_bytes(jpeg.read_bytes()[:600])), "cut.jpg: not a readable image"),
        (one_bad_file(tmp_path, "bomb.png", png_bomb), "bomb.png claims more than"),
        (one_bad_file(tmp_path, "bomb2.png", lambda p: png_bomb(p, 8000, 8000)),
         "bomb2.png claims 8000x8000 pixels, more than 40,000,000: refused before decoding"),
        (one_bad_file(tmp_path, "small.png", lambda p: Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(p)),
         "small.png is 32x32, the model wants 64x64 (--resize scales it)"),
    ]
    for folder, message in cases:
        assert_listed(invoke("producer", "enqueue", "--folder", folder, *model, check=False, env=env), message)
    good = one_bad_file(tmp_path, "ok.png", lambda p: None)
    assert_refused(
        invoke("producer", "enqueue", "--folder", good, "--model", str(lambda_model), check=False, env=env),
        "holds a Lambda layer (arbitrary Python code); refused, nothing was executed",
    )
    assert stored_rows(env) == {"runs": 0, "images": 0, "run_images": 0}


def test_grey_rgba_16_bit_and_other_sizes_are_converted(env, tmp_path, rectangles_model):
    folder = tmp_path / "mixed"
    rng = np.random.default_rng(1)
    save_png(folder / "rectangle" / "grey.png", rng.integers(0, 255, (64, 64), dtype=np.uint8))
    save_png(folder / "rectangle" / "rgba.png", rng.integers(0, 255, (64, 64, 4), dtype=np.uint8))
    (folder / "no_rectangle").mkdir()
    Image.fromarray(rng.integers(0, 65535, (64, 64), dtype=np.uint16)).save(folder / "no_rectangle" / "deep.png")
    save_png(folder / "no_rectangle" / "big.png", rng.integers(0, 255, (100, 80, 3), dtype=np.uint8))
    result = invoke("producer", "enqueue", "--folder", str(folder), "--model", str(rectangles_model), "--resize", env=env)
    assert "resized 1 images to 64x64" in result.stdout and "4 images stored" in result.stdout
    engine = create_engine(env["DATABASE_URL"])
    with engine.connect() as connection:
        stored = {Path(s).name: (w, h, c, png) for s, w, h, c, png in connection.execute(
            text("SELECT source, width, height, channels, png FROM images"))}
    engine.dispose()
    assert {name: (w, h, c) for name, (w, h, c, _) in stored.items()} == {
        "grey.png": (64, 64, 1), "rgba.png": (64, 64, 4), "deep.png": (64, 64, 1), "big.png": (64, 64, 3),
    }
    deep = np.asarray(Image.open(io.BytesIO(stored["deep.png"][3])))
    assert deep.dtype == np.uint8 and deep.max() > 200  # 16-bit values scaled, not clipped to 255


def test_links_out_of_the_folder_are_ignored(env, tmp_path, rectangles_model):
    outside = tmp_path / "outside"
    save_png(outside / "secret.png", np.zeros((64, 64, 3), np.uint8))
    folder = tmp_path / "linked"
    save_png(folder / "rectangle" / "inside.png", np.full((64, 64, 3), 200, np.uint8))
    (folder / "rectangle" / "escape.png").symlink_to(outside / "secret.png")
    (folder / "no_rectangle").symlink_to(outside, target_is_directory=True)
    result = invoke("producer", "enqueue", "--folder", str(folder), "--model", str(rectangles_model), env=env)
    assert "1 images stored" in result.stdout
    assert result.stdout.count("a link outside") == 2
    engine = create_engine(env["DATABASE_URL"])
    with engine.connect() as connection:
        assert [Path(s).name for (s,) in connection.execute(text("SELECT source FROM images"))] == ["inside.png"]
    engine.dispose()


def test_a_wrong_database_url_is_a_one_line_error(tmp_path, rectangles_model):
    with redis_database() as broker:
        for url, message in (
            ("postgresql+psycopg://postgres@127.0.0.1:1/nowhere", "cannot use the database at postgresql+psycopg://postgres@127.0.0.1:1/nowhere"),
            ("nonsense://x", "cannot use the database at"),
        ):
            env = {"DATABASE_URL": url, "CELERY_BROKER_URL": broker, "DATA_DIR": str(tmp_path)}
            for command in (["db", "upgrade"], ["producer", "enqueue", "--limit", "2", "--model", str(rectangles_model)]):
                assert_refused(invoke(*command, check=False, env=env), message)


def npz_claiming(path: Path, shape: tuple[int, ...]) -> Path:
    """A tiny .npz whose X header claims `shape` of float32 (a few bytes of data follow): a decompression bomb."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("X.npy", header.getvalue() + bytes(64))
    return path


def test_hostile_npz_files_are_refused_and_nothing_is_stored(env, tmp_path, rectangles_model):
    model = ["--model", str(rectangles_model)]
    good = tmp_path / "good.npz"
    np.savez(good, X=np.zeros((4, 64, 64, 3), np.uint8), y=np.array([0, 1, 0, 1]))
    cases = {
        "empty.npz": (lambda p: p.write_bytes(b""), "empty.npz: not a readable .npz"),
        "text.npz": (lambda p: p.write_text("hello"), "text.npz: not a readable .npz"),
        "cut.npz": (lambda p: p.write_bytes(good.read_bytes()[:300]), "cut.npz: not a readable .npz"),
        "bomb.npz": (lambda p: npz_claiming(p, (100_000, 1024, 1024, 3)), "refused before decompressing"),
        "objects.npz": (lambda p: np.savez(p, X=np.array([{"run": "code"}] * 2, dtype=object)),
                        "X holds Python objects; refused, nothing was unpickled"),
        "no_x.npz": (lambda p: np.savez(p, images=np.zeros((2, 64, 64, 3), np.uint8)), "has no array named X"),
        "flat.npz": (lambda p: np.savez(p, X=np.zeros((2, 64), np.uint8)), "X has shape (2, 64)"),
        "labels.npz": (lambda p: np.savez(p, X=np.zeros((2, 64, 64, 3), np.uint8), y=np.array([0.5, 1.0])),
                       "y must be 2 integer labels"),
    }
    for name, (make, message) in cases.items():
        make(tmp_path / name)
        assert_refused(invoke("producer", "enqueue", "--npz", str(tmp_path / name), *model, check=False, env=env), message)
    np.savez(tmp_path / "small.npz", X=np.zeros((2, 32, 32, 3), np.uint8))
    assert_listed(
        invoke("producer", "enqueue", "--npz", str(tmp_path / "small.npz"), *model, check=False, env=env),
        "small.npz[0] is 32x32, the model wants 64x64", "small.npz[1] is 32x32",
    )
    assert stored_rows(env) == {"runs": 0, "images": 0, "run_images": 0}


def test_grey_rgba_and_16_bit_npz_images_are_converted(env, tmp_path, rectangles_model):
    rng = np.random.default_rng(2)
    arrays = {
        "grey.npz": rng.integers(0, 255, (2, 64, 64), dtype=np.uint8),
        "rgba.npz": rng.integers(0, 255, (2, 64, 64, 4), dtype=np.uint8),
        "deep.npz": rng.integers(0, 65535, (2, 64, 64, 3), dtype=np.uint16),
    }
    for name, x in arrays.items():
        np.savez(tmp_path / name, X=x)
        result = invoke("producer", "enqueue", "--npz", str(tmp_path / name), "--model", str(rectangles_model), env=env)
        assert "2 images stored" in result.stdout
    engine = create_engine(env["DATABASE_URL"])
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT width, height, channels FROM images ORDER BY id")).all()
    engine.dispose()
    assert [tuple(row) for row in stored] == [(64, 64, 1)] * 2 + [(64, 64, 4)] * 2 + [(64, 64, 3)] * 2


def test_every_broken_file_of_a_folder_is_listed_at_once_or_skipped_and_recorded(env, tmp_path, rectangles_model):
    folder = tmp_path / "big"
    rng = np.random.default_rng(3)
    for label in ("rectangle", "no_rectangle"):
        for i in range(20):
            save_png(folder / label / f"{i:02d}.png", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    (folder / "rectangle" / "empty.png").write_bytes(b"")
    (folder / "rectangle" / "notes.png").write_text("not a picture")
    png_bomb(folder / "no_rectangle" / "bomb.png", 8000, 8000)
    save_png(folder / "no_rectangle" / "small.png", np.zeros((32, 32, 3), np.uint8))
    (folder / "no_rectangle" / "cut.png").write_bytes((folder / "rectangle" / "00.png").read_bytes()[:200])
    model = ["--model", str(rectangles_model)]

    refused = invoke("producer", "enqueue", "--folder", str(folder), *model, check=False, env=env)
    listed = assert_listed(
        refused, "rectangle/empty.png: not a readable image", "rectangle/notes.png: not a readable image",
        "no_rectangle/bomb.png claims 8000x8000 pixels", "no_rectangle/small.png is 32x32, the model wants 64x64",
        "no_rectangle/cut.png: not a readable image",
    )
    assert len(listed) == 5 and refused.stderr.startswith("error: 5 of 45 images cannot be explained")
    assert "add --skip-bad to explain the other 40 and record these 5 on the run" in refused.stderr
    assert stored_rows(env) == {"runs": 0, "images": 0, "run_images": 0}

    skipped = invoke("producer", "enqueue", "--folder", str(folder), *model, "--skip-bad", "--name", "skipping", env=env)
    assert "skipping 5 images that cannot be explained" in skipped.stdout and "40 images stored" in skipped.stdout
    assert stored_rows(env) == {"runs": 1, "images": 40, "run_images": 40}
    engine = create_engine(env["DATABASE_URL"])
    with engine.connect() as connection:
        recorded = json.loads(connection.scalar(text("SELECT skipped FROM runs WHERE name = 'skipping'")))
    engine.dispose()
    assert sorted(Path(entry["source"]).name for entry in recorded) == ["bomb.png", "cut.png", "empty.png", "notes.png", "small.png"]
    status = invoke("producer", "status", "skipping", env={**env, "COLUMNS": "200"}).stdout
    assert re.search(r"skipped files\W+5 \(--skip-bad; listed below\)", status)
    assert all("".join(entry["reason"].split()) in "".join(status.split()) for entry in recorded)
    report = tmp_path / "report.html"
    invoke("db", "report", "--run", "skipping", "-o", str(report), env=env)
    assert "5 files skipped with --skip-bad" in report.read_text()
    assert all(html.escape(entry["reason"]) in report.read_text() for entry in recorded)

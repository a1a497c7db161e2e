"""Every benchmark's `--quick`, run once in the suite on a handful of images, so that no benchmark can rot between its
full runs: it must end well and print its headline figures (and its last line, the JSON, the keys the docs read).

Never with --save: docs/figures is left alone. Each benchmark runs as a user runs it (`python -m benchmarks.NAME
--quick`, from the repository root) on a DATA_DIR of the module's own holding the demo models it needs: the suite's
fixtures where there are some (rectangles, digits), the others (shapes, tagged) trained once per run on the article's
200 images. quality and peers are trimmed further with their own options (one image per data set, one worker
process: every row and section still runs, on less, and TensorFlow starts once).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import made_once, run_cli, seed_model
from tests.services import POSTGRES_ADMIN, REPO, redis_database, redis_url

# benchmarks.pipeline's broker (BENCHMARK_REDIS_URL): a Redis database none of the suite's tests use (1-10 are the
# pipeline stacks', 11 and 13-15 others'); the benchmark flushes it before and after, and so does the test
PIPELINE_REDIS_DATABASE = 12
TIMEOUT_S = 600

NUMBER = r"-?[\d.]+(e[-+]?\d+)?"
# name: (options besides --quick, demo models it needs, lines its output must hold, keys its JSON line must hold)
BENCHMARKS = {
    "audit": (
        (),
        ("tagged",),
        (r"^tagged: \d+ validation images explained in \d+ s; \d+ lean on the tag; the group holding most of them: ",
         rf"^  evidence: pointing agrees on \d+ of \d+ tagged images; largest difference in evidence share {NUMBER}$",
         r"^evidence: the tagged run's alone with --quick \(rectangles, shapes, masks and boxes: a full run\)$",
         rf"^maps at save time: {NUMBER}% of a worker's time per image$",
         rf"^  audit: {NUMBER} s, peak \d+ MB$",
         rf"^  planted shortcut: precision {NUMBER}, recall {NUMBER}$",
         rf"^  audit with every map remade from the weights: {NUMBER} s, peak \d+ MB$",
         rf"^  report: {NUMBER} s, {NUMBER} MB, peak \d+ MB$",
         rf"^  \d+ classes: audit {NUMBER} s, peak \d+ MB, \d+ strategy groups \(\d+ suspected\); report {NUMBER} s, "
         rf"{NUMBER} MB$"),
        ("shortcut_precision", "shortcut_recall", "shortcut_f1", "tag_peak", "shortcut_named_first",
         "evidence_pointing", "evidence_max_diff", "evidence_pointing_agree_tagged", "maps_share_of_worker_time",
         "audit_growth", "planted_precision_4k", "planted_recall_4k", "classes_40_audit_s", "classes_40_report_mb",
         "classes_40_report_s"),
    ),
    "engine": (
        (),
        ("rectangles",),
        (rf"^64x64 rectangles CNN: naive {NUMBER} s/image, .*; naive/engine {NUMBER}x, engine/limit {NUMBER}, "
         rf"SLIC engine/limit {NUMBER}; peak RSS \d+ MB$",
         rf"^\d+x\d+ MobileNetV2: naive {NUMBER} s/image, .*; naive/engine {NUMBER}x, engine/limit {NUMBER}, ",
         rf"^  the default's segmentation and fill: .*default/fixed seconds {NUMBER}, auto/fixed {NUMBER}$"),
        ("naive_over_engine", "engine_over_limit", "engine_slic_over_limit", "default_over_fixed_s",
         "auto_over_fixed_s", "rectangles_images_per_s", "mobilenet224_naive_over_engine",
         "mobilenet224_engine_over_limit", "mobilenet_default_s", "mobilenet_auto_s"),
    ),
    "peers": (
        ("--images", "1", "--processes", "1"),
        ("rectangles", "shapes"),
        (rf"^\| rectangles \| ours: default \| {NUMBER} \| {NUMBER} \| {NUMBER} \| \d+ \| {NUMBER} \|$",
         rf"^\| shapes \| lime explain_instance: article \(quickshift, mean, 1000\) \| {NUMBER} \|",
         r"^wall time \d+ s$"),
        ("ours_pointing", "ours_model_calls", "lime_pointing", "lime_engine_segments_pointing",
         "second_ours_pointing", "second_lime_pointing"),
    ),
    "pipeline": (
        (),
        ("rectangles",),
        (r"^pipeline: \d+ ok, 0 failed in [\d.]+ s$",
         rf"^engine_sequential/pipeline {NUMBER} \(target >= 1\.6\), naive/pipeline {NUMBER} \(target >= 25\)$"),
        ("pipeline_s", "engine_sequential_s", "naive_s", "engine_sequential_over_pipeline", "naive_over_pipeline"),
    ),
    "quality": (
        ("--grid-images", "1", "--full-images", "1", "--digits-images", "2", "--processes", "1"),
        ("rectangles", "shapes", "tagged", "digits", "glyphs"),
        (*(rf"^{dataset}: default \d+ model calls, {NUMBER} s; fixed 1000 \d+ calls, {NUMBER} s: calls ratio "
           rf"{NUMBER}, seconds ratio {NUMBER}; pointing {NUMBER} \(target" for dataset in ("rectangles", "shapes")),
         *(rf"^{dataset} by construction: pointing ({NUMBER}|nan) \(target >= 0\.98\), leakage ({NUMBER}|nan) "
           for dataset in ("rectangles", "shapes", "tagged", "glyphs")),
         r"^the grid's choice \(",
         rf"^\| digits \| default \| {NUMBER} \|"),
        ("pointing", "stability", "convergence", "model_calls", "second_pointing", "fixed_model_calls",
         "auto_model_calls", "article_pointing", "digits_default_stability", "construct_pointing_min",
         "construct_leakage_max", "background_evidence_share_max", "construct_glyphs_leakage"),
    ),
    "realsize": (
        (),
        (),
        (rf"^mobilenet_v2 at 32x32: keras {NUMBER} ms/image \(batch \d+\), openvino {NUMBER} ms/image \(batch \d+\): "
         rf"{NUMBER}x; max \|dp\| {NUMBER}",
         rf"^  explanation through openvino: {NUMBER} s, 513 model calls; limit {NUMBER} s; engine/limit {NUMBER}; "
         rf"2x1 {NUMBER} images/s, 1x2 {NUMBER} images/s$",
         rf"^  producer local, 2 photographs, 1 process: keras {NUMBER} s/image, auto {NUMBER} s/image "
         rf"\(runtime (openvino|keras): "),
        ("realsize_speedup_mobilenet_v2", "runtime_chosen", "max_prob_diff", "top5_same_share", "engine_over_limit_224"),
    ),
    "scale": (
        (),
        ("rectangles",),
        (*(rf"^{key}: {NUMBER} at \d+k?, {NUMBER} at \d+k? \(ratio {NUMBER}; target within 20%\)$"
           for key in ("producer_peak_mb", "redis_peak_mb", "overhead_ms")),
         rf"^--images reference, [\d,]+ images: {NUMBER} KB per image in the database"),
        ("producer_peak_mb_ratio", "redis_peak_mb_ratio", "overhead_ms_ratio", "enqueue_per_s", "db_kb_per_image",
         "db_kb_per_image_reference"),
    ),
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """The benchmarks' DATA_DIR: demo models (put in by the test), scale's folders, quality's cached references."""
    folder = tmp_path_factory.mktemp("benchmarks-data")
    (folder / "models").mkdir()
    return folder


def demo_model(request, tmp_path_factory, dataset: str):
    """The demo model of `dataset`: the suite's fixture where it has one, else its seed preset's (the benchmark's
    figures are not judged here, only that it runs and prints them)."""
    if dataset in ("rectangles", "digits"):
        return request.getfixturevalue(f"{dataset}_model")
    return seed_model(tmp_path_factory, dataset)


def glyphs_model(tmp_path_factory):
    """benchmarks.glyphs' model, trained as the benchmark trains it (a minute) and kept across runs."""
    from benchmarks.glyphs import glyphs_model_path, recipe_key

    folder = made_once(tmp_path_factory, "glyphs", lambda folder: run_cli("benchmarks.glyphs", env={
        "DATA_DIR": str(folder)}), trained=["glyphs", recipe_key()])
    return folder / glyphs_model_path().relative_to(glyphs_model_path().parents[1])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_quick_runs_and_prints_its_headline_figures(name, data_dir, request, tmp_path_factory):
    options, datasets, lines, keys = BENCHMARKS[name]
    for dataset in datasets:
        model = glyphs_model(tmp_path_factory) if dataset == "glyphs" else demo_model(request, tmp_path_factory, dataset)
        for source in (model, model.with_suffix(".json")):  # the model and its metadata, where DATA_DIR keeps them
            target = data_dir / ("benchmarks" if dataset == "glyphs" else "models") / source.name
            target.parent.mkdir(exist_ok=True)
            if not target.exists():
                shutil.copy(source, target)
    broker = redis_url(PIPELINE_REDIS_DATABASE)
    env = {**os.environ, "DATA_DIR": str(data_dir), "BENCHMARK_REDIS_URL": broker, "TF_CPP_MIN_LOG_LEVEL": "3",
           "BENCHMARK_POSTGRES_ADMIN_URL": POSTGRES_ADMIN}  # the tests' PostgreSQL server (TEST_POSTGRES_ADMIN_URL)
    with redis_database(broker):
        done = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--quick", *options], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=TIMEOUT_S)
    output = done.stdout
    assert done.returncode == 0, f"python -m benchmarks.{name} --quick failed:\n{output[-3000:]}\n{done.stderr[-3000:]}"
    missing = [line for line in lines if not re.search(line, output, re.MULTILINE)]
    assert missing == [], f"not in the output of benchmarks.{name}:\n{missing}\n{output[-3000:]}"
    result = json.loads(output.strip().splitlines()[-1])
    assert [key for key in keys if key not in result] == [], result
    assert not re.search(r"^saved ", output, re.MULTILINE)  # nothing written into docs/figures

"""`python -m benchmarks.realsize`: users' real networks (224x224, 1000 classes) through each runtime.

MobileNetV2, ResNet50 and EfficientNetB0 from keras.applications, `weights=None` with seeded BatchNormalization
(models.realsize: outputs that differ between images), on scikit-image's photographs. Per model, in one process on
one thread:
- the runtimes: Keras' and OpenVINO's ms per image at their best batch, the largest probability difference between
  them on the photographs (`max_prob_diff`);
- an explanation at the default, through each runtime in batches of its best size (as a worker serves it): seconds,
  and their ratio to the limit, the runtime's own time to predict as many images as the explanation predicts (its
  model calls and its faithfulness curves) in the same batches, timed right after each explanation
  (`engine_over_limit`); whether both runtimes' explanations have the same top-5 superpixels;
- 2 processes x 1 thread against 1 process x 2 threads: images per second of each runtime's forward passes (the
  explanations are model-bound: engine/limit near 1), and Keras' with TensorFlow's oneDNN kernels off;
then `python -m producer local` on the photographs (resized, 2 worker processes), `--runtime keras` against
`--runtime auto`, each on a fresh DATA_DIR (so auto's conversion and choice are part of its time): seconds per image
of the run, and the speedup of auto over keras (`realsize_speedup_<model>`). The last line is one JSON object.
`--quick`: MobileNetV2 at 32x32, one explanation, two photographs end to end on one worker process, the auto run
reusing the in-process conversion and both runtimes timed in the same processes (fewer TensorFlow start-ups): to keep
the benchmark working, not to measure (no --save).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.figures import REPO, finish, run_sizes
from models.realsize import NETWORKS, photographs

# shared: the auto run finds the in-process conversion in its DATA_DIR, and both runtimes' forward passes are timed in
# the same processes (a full run keeps them apart: auto's conversion is part of its time)
FULL = {"models": ",".join(NETWORKS), "side": 224, "explained": 4, "local_images": 24, "batch_sizes": (16, 32, 64),
        "throughput_batches": 2, "photos": 16, "workers": 2, "shared": False}
QUICK = {"models": "mobilenet_v2", "side": 32, "explained": 1, "local_images": 2, "batch_sizes": (16,),
         "throughput_batches": 1, "photos": 4, "workers": 1, "shared": True}
# ResNet50 is ~7x MobileNetV2's work per image: fewer images keep the benchmark within the hour
FEWER = {"resnet50": 0.5}
TOP = 5


def build(name: str, side: int, folder: Path):
    """The stand-in network saved as a user's .keras file, and its Classifier (Keras) in this process."""
    from models.artifacts import ModelMetadata, file_sha256
    from models.classifier import Classifier
    from models.realsize import standin_network

    network, family = standin_network(name, side=side)
    path = folder / f"{name}.keras"
    network.save(path)
    metadata = ModelMetadata([str(i) for i in range(1000)], [side, side, 3])
    # the file's hash, as a worker loading it has: the same conversion key
    return path, Classifier(network, metadata, file_sha256(path), preprocess=family), family


def ms_per_image(classifier, runtime, images: np.ndarray, batch_sizes) -> tuple[float, int]:
    """The best ms per image of `runtime` over the batch sizes (each warmed first, best of three), and its batch."""
    best = (float("inf"), 0)
    for batch in batch_sizes:
        chunk = np.resize(images, (batch, *images.shape[1:]))
        classifier.predict(chunk, runtime)
        runs = []
        for _ in range(3):
            started = time.perf_counter()
            classifier.predict(chunk, runtime)
            runs.append((time.perf_counter() - started) / batch * 1000)
        best = min(best, (min(runs), batch))
    return best


def explanations(classifier, runtime, images: np.ndarray, batch: int) -> list[tuple[float, float, object]]:
    """Each image explained at the default through `runtime`, in batches of `batch` (its best, as a worker's choice
    of runtime serves it), and right after it its limit: the runtime's own time for as many images (those the
    explanation predicted) in batches of `batch`, so that the two are timed side by side whatever the machine's
    drift: (seconds, limit seconds, explanation)."""
    from dataclasses import replace

    from worker.engine import ExplainParams, explain

    served = classifier.served_by(runtime, None)
    params = ExplainParams(batch_size=batch)
    explain(images[0], served.predict, replace(params, num_samples=16), value_range=(0.0, 255.0))  # warm up
    done = []
    for image in images:
        started = time.perf_counter()
        result = explain(image, served.predict, params, value_range=(0.0, 255.0))
        seconds = time.perf_counter() - started
        same_work = np.resize(image, (predicted_images(result), *image.shape))
        started = time.perf_counter()
        for start in range(0, len(same_work), batch):
            runtime.outputs(same_work[start : start + batch])
        done.append((seconds, time.perf_counter() - started, result))
    return done


def predicted_images(result) -> int:
    """What an explanation asked the model for: its distinct masks, and its deletion and insertion curves."""
    return result.sampling.model_calls + len(result.deletion_curve) + len(result.insertion_curve)


def top_superpixels(result) -> set[int]:
    weights = result.labels[result.predicted_label].weights
    return set(np.argsort(-weights, kind="stable")[:TOP].tolist())


def forward_passes(model: str, preprocess: str, xmls: list[str | None], threads: int, side: int, batches: int,
                   barrier) -> list[float]:
    """In a process of its own, per runtime in turn: `batches` batches of 64 through Keras (xml None) or OpenVINO on
    `threads` threads, started with the other processes; seconds taken."""
    from threadpoolctl import threadpool_limits

    from models.classifier import configure_tensorflow, load_classifier
    from models.runtimes import OpenVinoRuntime

    configure_tensorflow(threads)
    threadpool_limits(threads)
    classifier = load_classifier(model, preprocess=preprocess)
    images = np.random.default_rng(0).uniform(0, 255, (64, side, side, 3)).astype(np.float32)
    taken = []
    for xml in xmls:
        runtime = classifier.keras if xml is None else OpenVinoRuntime(Path(xml), threads)
        classifier.predict(images, runtime)  # warm up
        barrier.wait()
        started = time.perf_counter()
        for _ in range(batches):
            classifier.predict(images, runtime)
        taken.append(time.perf_counter() - started)
    return taken


def throughput(model: Path, preprocess: str, xmls: list[Path | None], processes: int, threads: int, side: int,
               batches: int, environment: dict[str, str] | None = None) -> list[float]:
    """Images per second of `processes` processes x `threads` threads predicting at once, per runtime in turn (xml
    None: Keras) in the same processes, started with `environment` added to this one's."""
    context = multiprocessing.get_context("spawn")  # TensorFlow is loaded in this process: never fork it
    saved = dict(os.environ)
    os.environ.update(environment or {})  # what the spawned processes start with
    try:
        with context.Manager() as manager:
            barrier = manager.Barrier(processes)
            with context.Pool(processes) as pool:
                seconds = pool.starmap(forward_passes, [
                    (str(model), preprocess, [None if xml is None else str(xml) for xml in xmls], threads, side,
                     batches, barrier)
                ] * processes)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return [processes * batches * 64 / max(taken) for taken in zip(*seconds)]


def local_run(model: Path, preprocess: str, folder: Path, runtime: str, data_dir: Path,
              workers: int) -> tuple[float, float, int, str]:
    """`python -m producer local` on the folder with this runtime and `workers` worker processes: (the run's seconds
    per image, the workers' mean seconds per explanation, images, the runtime line the input check printed)."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from db.models import Explanation, Run
    from db.reads import run_wall_seconds
    from db.session import make_engine

    env = {**os.environ, "DATA_DIR": str(data_dir), "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "200"}
    env.pop("DATABASE_URL", None), env.pop("CELERY_BROKER_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "producer", "local", "--folder", str(folder), "--model", str(model), "--resize",
         "--preprocess", preprocess, "--runtime", runtime, "--workers", str(workers)],
        cwd=REPO, env=env, capture_output=True, text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"producer local --runtime {runtime} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    said = re.search(r"^runtime (keras|openvino): .*$", done.stdout, re.MULTILINE)
    engine = make_engine(f"sqlite:///{data_dir / 'results.db'}")
    with Session(engine) as session:
        run = session.scalars(select(Run)).one()
        seconds, images = run_wall_seconds(run), run.image_count
        explaining = statistics.mean(timings["total_s"] for timings in session.scalars(select(Explanation.timings)))
    engine.dispose()
    return seconds / images, explaining, images, said[0] if said else f"runtime {runtime}"


def measure(name: str, sizes: dict, folder: Path, photos: np.ndarray, originals: list) -> dict:
    from core.settings import Settings
    from models.runtimes import OpenVinoRuntime, convert_to_openvino

    side = sizes["side"]
    model, classifier, family = build(name, side, folder)
    data_dirs = {runtime: folder / f"data-{name}-{runtime}" for runtime in ("keras", "auto")}
    started = time.perf_counter()
    xml = convert_to_openvino(classifier, Settings(data_dir=data_dirs["auto"]).openvino_cache_dir if sizes["shared"]
                              else folder / "openvino")
    convert_s = time.perf_counter() - started
    runtimes = {"keras": classifier.keras, "openvino": OpenVinoRuntime(xml, threads=1)}
    figures = {"convert_s": convert_s}
    probabilities = {key: classifier.predict(photos, runtime) for key, runtime in runtimes.items()}
    figures["max_prob_diff"] = float(np.abs(probabilities["keras"] - probabilities["openvino"]).max())
    figures["same_class_share"] = float((probabilities["keras"].argmax(1) == probabilities["openvino"].argmax(1)).mean())
    figures["distinct_top1"] = len(set(probabilities["keras"].argmax(1).tolist()))
    count = max(1, round(sizes["explained"] * FEWER.get(name, 1)))
    done = {}
    for key, runtime in runtimes.items():
        ms, batch = ms_per_image(classifier, runtime, photos, sizes["batch_sizes"])
        done[key] = explanations(classifier, runtime, photos[:count], batch)
        figures.update({
            f"{key}_ms": ms, f"{key}_batch": batch,
            f"{key}_explain_s": statistics.mean(seconds for seconds, _, _ in done[key]),
            f"{key}_limit_s": statistics.mean(limit for _, limit, _ in done[key]),
            f"{key}_over_limit": statistics.mean(seconds / limit for seconds, limit, _ in done[key]),
            f"{key}_model_calls": statistics.mean(result.sampling.model_calls for _, _, result in done[key]),
        })
    pairs = list(zip(done["keras"], done["openvino"]))
    figures["top5_same"] = sum(top_superpixels(a) == top_superpixels(b) for (_, _, a), (_, _, b) in pairs)
    figures["top5_compared"] = len(pairs)
    figures["runtime_speedup"] = figures["keras_ms"] / figures["openvino_ms"]
    for keys in [list(runtimes)] if sizes["shared"] else [[key] for key in runtimes]:
        for processes, threads in ((2, 1), (1, 2)):
            rates = throughput(model, family, [xml if key == "openvino" else None for key in keys], processes, threads,
                               side, sizes["throughput_batches"])
            figures.update({f"{key}_{processes}x{threads}_images_per_s": rate for key, rate in zip(keys, rates)})
    # TensorFlow's oneDNN kernels off, as TensorFlow leaves them on CPUs without AVX-512 (models.classifier turns them on)
    figures["keras_2x1_onednn_off_images_per_s"] = throughput(
        model, family, [None], 2, 1, side, sizes["throughput_batches"], {"TF_ENABLE_ONEDNN_OPTS": "0"})[0]
    print(f"{name} at {side}x{side}: keras {figures['keras_ms']:.1f} ms/image (batch {figures['keras_batch']}), "
          f"openvino {figures['openvino_ms']:.1f} ms/image (batch {figures['openvino_batch']}): "
          f"{figures['runtime_speedup']:.2f}x; max |dp| {figures['max_prob_diff']:.1e}, same class "
          f"{figures['same_class_share']:.0%} of {len(photos)} photographs ({figures['distinct_top1']} distinct)", flush=True)
    for key in runtimes:
        print(f"  explanation through {key}: {figures[f'{key}_explain_s']:.2f} s, {figures[f'{key}_model_calls']:.0f} "
              f"model calls; limit {figures[f'{key}_limit_s']:.2f} s; engine/limit {figures[f'{key}_over_limit']:.3f}; "
              f"2x1 {figures[f'{key}_2x1_images_per_s']:.1f} images/s, 1x2 {figures[f'{key}_1x2_images_per_s']:.1f} "
              f"images/s", flush=True)
    print(f"  top-5 superpixels the same through both runtimes: {figures['top5_same']} of {figures['top5_compared']}; "
          f"keras 2x1 with oneDNN off {figures['keras_2x1_onednn_off_images_per_s']:.1f} images/s", flush=True)

    images = max(2, round(sizes["local_images"] * FEWER.get(name, 1)))
    source = folder / f"photos-{name}"
    for i, (photo, pixels) in enumerate(originals[:images]):
        from PIL import Image

        (source / str(i % 2)).mkdir(parents=True, exist_ok=True)  # folders named by output number: outputs 0 and 1
        Image.fromarray(pixels).save(source / str(i % 2) / f"{photo}.jpg", quality=92)
    for runtime, data_dir in data_dirs.items():
        per_image, explaining, figures["local_images"], said = local_run(model, family, source, runtime, data_dir,
                                                                         sizes["workers"])
        figures[f"local_{runtime}_s_per_image"] = per_image
        figures[f"local_{runtime}_explain_s"] = explaining
        if runtime == "auto":
            figures["auto_line"] = said
            figures["runtime_chosen"] = said.split(":")[0].removeprefix("runtime ")
    figures["speedup"] = figures["local_keras_s_per_image"] / figures["local_auto_s_per_image"]
    processes = f"{sizes['workers']} process" + ("es" if sizes["workers"] > 1 else "")
    print(f"  producer local, {figures['local_images']} photographs, {processes}: keras "
          f"{figures['local_keras_s_per_image']:.2f} s/image, auto {figures['local_auto_s_per_image']:.2f} s/image "
          f"({figures['auto_line']}): auto/keras speedup {figures['speedup']:.2f}; an explanation in the workers "
          f"{figures['local_keras_explain_s']:.2f} s against {figures['local_auto_explain_s']:.2f} s "
          f"({figures['local_keras_explain_s'] / figures['local_auto_explain_s']:.2f}x)", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=None, help=f"comma-separated, of {', '.join(NETWORKS)} (default all; "
                        "--quick: mobilenet_v2)")
    parser.add_argument("--explained", type=int, default=None, help="photographs explained per runtime in-process "
                        "(default 4, half for ResNet50; --quick: 1)")
    parser.add_argument("--local-images", type=int, default=None, help="photographs of the producer local runs "
                        "(default 24, half for ResNet50; --quick: 2)")
    parser.add_argument("--quick", action="store_true", help="MobileNetV2 at 32x32, 1 explanation, 2 images end to end "
                        "on 1 worker process.")
    parser.add_argument("--save", action="store_true", help="Keep the figures in docs/figures/realsize.json (the docs).")
    args = parser.parse_args()
    sizes = run_sizes(parser, args, FULL, QUICK)
    names = sizes["models"].split(",")
    unknown = [name for name in names if name not in NETWORKS]
    if unknown:
        parser.error(f"unknown models {unknown}; choose of {', '.join(NETWORKS)}")

    from threadpoolctl import threadpool_limits

    from core import images as pixels_of
    from models.classifier import configure_tensorflow

    configure_tensorflow(1)
    threadpool_limits(1)
    started = time.perf_counter()
    originals = photographs(max(sizes["photos"], sizes["local_images"]))
    side = sizes["side"]
    photos = np.stack([pixels_of.resize(pixels, side, side) for _, pixels in originals[: sizes["photos"]]]).astype(np.float32)
    per_model = {}
    with tempfile.TemporaryDirectory(prefix="realsize-") as tmp:
        for name in names:
            per_model[name] = measure(name, sizes, Path(tmp), photos, originals)
    compared = sum(figures["top5_compared"] for figures in per_model.values())
    result = {
        "side": side,
        "models": per_model,
        "runtime_chosen": {name: figures["runtime_chosen"] for name, figures in per_model.items()},
        "max_prob_diff": max(figures["max_prob_diff"] for figures in per_model.values()),
        # of the networks auto served by OpenVINO (it keeps the others on Keras)
        "max_prob_diff_used": max((figures["max_prob_diff"] for figures in per_model.values()
                                   if figures["runtime_chosen"] == "openvino"), default=None),
        "top5_same_share": sum(figures["top5_same"] for figures in per_model.values()) / compared,
        # the largest ratio of any model through the runtime auto chose for it
        "engine_over_limit_224": max(figures[f"{figures['runtime_chosen']}_over_limit"] for figures in per_model.values()),
        "wall_s": time.perf_counter() - started,
    }
    for name, figures in per_model.items():
        result[f"realsize_speedup_{name}"] = figures["speedup"]
    print(f"max |dp| {result['max_prob_diff']:.1e} (target <= 1e-5); top-5 the same {result['top5_same_share']:.0%} "
          f"(target >= 95%); engine/limit {result['engine_over_limit_224']:.3f} (target <= 1.05); "
          + ", ".join(f"{name} auto/keras {per_model[name]['speedup']:.2f}" for name in names), flush=True)
    finish("realsize", result, args.save)


if __name__ == "__main__":
    main()

"""`python -m benchmarks.engine`: the engine against the article's way and against the model-bound limit.

One process, TensorFlow (and BLAS) pinned to one thread, `num_samples` perturbations per image:
- naive_s:  seconds per image the article's way: lime's defaults, `model.predict` as classifier_fn
            (called every 10 samples, with lime's per-sample deepcopy loop);
- engine_s: seconds per image with `worker.engine.explain` (lime's default quickshift segmentation);
- limit_s:  one compiled forward pass over `num_samples` perturbed images at the best batch size.
Also the engine with SLIC (~50 superpixels, so no repeated masks to skip: the honest overhead over
the limit); at the default's segmentation and fill, the default against `num_samples` of lime's independent samples
with lime's fit and against `auto` (seconds and model calls per explanation); the same figures at 224x224 on
MobileNetV2(weights=None), the rectangles generator's speed and the peak RSS. The last line is one JSON object.
`--quick`: the same sections and figures on 2 images (1 the article's way), 50 samples, two batch sizes and a
32x32 MobileNetV2 (its smallest input), in well under a minute: to keep the benchmark working, not to measure (no
--save).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import resource
import statistics
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from benchmarks.figures import finish, run_sizes
from benchmarks.known_answer import FIXED_1000
from models.classifier import Classifier, configure_tensorflow, load_classifier
from models.artifacts import ModelMetadata, default_model_path
from models.datasets import load_dataset, make_rectangles, smooth_colour_images
from worker.engine import ARTICLE_PRESET, ExplainParams, explain
from worker.engine.fills import fill_perturbed, hidden_image
from worker.engine.segmentation import segment

BATCH_SIZES = (32, 64, 128, 256, 512)
# what a full run and --quick measure (an option given on the command line wins over either)
FULL = {"num_samples": 1000, "images": 5, "naive_images": 3, "generated": 2000, "batch_sizes": BATCH_SIZES,
        "mobilenet_side": 224, "mobilenet_batch_sizes": (32, 64, 128, 256)}
QUICK = {"num_samples": 50, "images": 2, "naive_images": 1, "generated": 200, "batch_sizes": (32, 64),
         "mobilenet_side": 32, "mobilenet_batch_sizes": (32, 64)}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def naive_seconds(image: np.ndarray, keras_model, num_samples: int) -> float:
    """The article's call: LimeImageExplainer(random_state=42), model.predict, top_labels=2."""
    from lime.lime_image import LimeImageExplainer

    started = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):  # lime's tqdm bar
        LimeImageExplainer(random_state=42).explain_instance(
            image, lambda x: keras_model.predict(x, verbose=0), top_labels=2, num_samples=num_samples
        )
    return time.perf_counter() - started


def engine_seconds(image: np.ndarray, classifier: Classifier, params: ExplainParams) -> tuple[float, int]:
    seconds, result = timed_explain(image, classifier, params)
    return seconds, result.n_segments


def timed_explain(image: np.ndarray, classifier: Classifier, params: ExplainParams):
    started = time.perf_counter()
    result = explain(image, classifier.predict, params, input_shape=classifier.input_shape)
    return time.perf_counter() - started, result


def default_fixed_and_auto(images: np.ndarray, classifier: Classifier, num_samples: int) -> dict:
    """At the default's segmentation and fill: the default (its design, estimator and sample count), `num_samples` of
    lime's independent masks with lime's fit ("fixed"), and `auto`: seconds and model calls (distinct masks
    predicted) per explanation, the samples, and why sampling stopped."""
    figures = {}
    rows = (("default", {}), ("fixed", {**FIXED_1000, "num_samples": num_samples}),
            ("auto", {"num_samples": "auto"}))
    for name, options in rows:
        params = ExplainParams(**options)
        runs = [timed_explain(image, classifier, params) for image in images]
        figures[f"{name}_s"] = statistics.mean(seconds for seconds, _ in runs)
        figures[f"{name}_model_calls"] = statistics.mean(result.sampling.model_calls for _, result in runs)
        figures[f"{name}_samples"] = statistics.mean(result.sampling.samples for _, result in runs)
        stops = [result.sampling.stop for _, result in runs]
        figures[f"{name}_stops"] = ", ".join(f"{stops.count(stop)} {stop}" for stop in sorted(set(stops)))
    figures["default_over_fixed_s"] = figures["default_s"] / figures["fixed_s"]
    figures["auto_over_fixed_s"] = figures["auto_s"] / figures["fixed_s"]
    return figures


def limit_seconds(image: np.ndarray, classifier: Classifier, num_samples: int, batch_sizes) -> tuple[float, int]:
    """Best time of one forward pass over `num_samples` perturbed images, and the batch size that gave it."""
    import tensorflow as tf

    params = ExplainParams(**ARTICLE_PRESET)
    segments = segment(image, params)
    rows = np.random.RandomState(0).randint(0, 2, (num_samples, int(segments.max()) + 1))
    images = fill_perturbed(np.empty((num_samples, *image.shape), np.float32), image, hidden_image(image, segments, "mean"), segments, rows)
    forward = tf.function(lambda x: classifier.model(x, training=False))
    best = (float("inf"), 0)
    for batch in batch_sizes:
        chunks = [images[i : i + batch] for i in range(0, num_samples, batch)]
        for chunk in {len(c): c for c in chunks}.values():
            forward(chunk)  # trace every shape before timing
        runs = []
        for _ in range(2):
            started = time.perf_counter()
            for chunk in chunks:
                np.asarray(forward(chunk))
            runs.append(time.perf_counter() - started)
        best = min(best, (min(runs), batch))
    return best


def measure(label: str, images: np.ndarray, classifier: Classifier, num_samples: int, naive_images: int, batch_sizes) -> dict:
    # lime's own settings, as the article's way uses them, so that naive and engine do the same work
    params = ExplainParams(**{**ARTICLE_PRESET, "num_samples": num_samples})
    slic = ExplainParams(**{**ARTICLE_PRESET, "num_samples": num_samples, "segmentation": "slic", "n_segments": 50})
    explain(images[0], classifier.predict, params)  # trace the compiled function's batch sizes once
    explain(images[0], classifier.predict, slic)
    engine, segments = zip(*(engine_seconds(image, classifier, params) for image in images))
    engine_slic, slic_segments = zip(*(engine_seconds(image, classifier, slic) for image in images))
    naive = [naive_seconds(image, classifier.model, num_samples) for image in images[:naive_images]]
    limit, best_batch = limit_seconds(images[0], classifier, num_samples, batch_sizes)
    figures = {
        "naive_s": statistics.mean(naive),
        "engine_s": statistics.mean(engine),
        "engine_slic_s": statistics.mean(engine_slic),
        "limit_s": limit,
        "best_batch": best_batch,
        "superpixels_quickshift": statistics.mean(segments),
        "superpixels_slic": statistics.mean(slic_segments),
    }
    figures["naive_over_engine"] = figures["naive_s"] / figures["engine_s"]
    figures["engine_over_limit"] = figures["engine_s"] / figures["limit_s"]
    figures["engine_slic_over_limit"] = figures["engine_slic_s"] / figures["limit_s"]
    figures.update(default_fixed_and_auto(images, classifier, num_samples))
    figures["peak_rss_mb"] = peak_rss_mb()
    print(
        f"{label}: naive {figures['naive_s']:.3f} s/image, engine {figures['engine_s']:.3f} s "
        f"({figures['superpixels_quickshift']:.1f} quickshift superpixels), engine with SLIC "
        f"{figures['engine_slic_s']:.3f} s ({figures['superpixels_slic']:.1f} superpixels), limit {limit:.3f} s "
        f"(batch {best_batch}); naive/engine {figures['naive_over_engine']:.1f}x, engine/limit "
        f"{figures['engine_over_limit']:.2f}, SLIC engine/limit {figures['engine_slic_over_limit']:.2f}; "
        f"peak RSS {figures['peak_rss_mb']:.0f} MB\n"
        f"  the default's segmentation and fill: default {figures['default_s']:.3f} s, "
        f"{figures['default_model_calls']:.0f} model calls; lime's {num_samples} independent samples and fit "
        f"{figures['fixed_s']:.3f} s, {figures['fixed_model_calls']:.0f} calls; auto {figures['auto_s']:.3f} s, "
        f"{figures['auto_model_calls']:.0f} calls ({figures['auto_samples']:.0f} samples; {figures['auto_stops']}); "
        f"default/fixed seconds {figures['default_over_fixed_s']:.2f}, auto/fixed {figures['auto_over_fixed_s']:.2f}",
        flush=True,
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-samples", type=int, default=None, help="default 1000 (--quick: 50)")
    parser.add_argument("--images", type=int, default=None, help="validation images timed with the engine (default 5, "
                        "--quick: 2)")
    parser.add_argument("--naive-images", type=int, default=None, help="of those, how many the article's way (default "
                        "3, --quick: 1)")
    parser.add_argument("--model", type=Path, default=None, help="rectangles model (default: the demo one, trained if missing)")
    parser.add_argument("--skip-224", action="store_true", help="skip the 224x224 MobileNetV2 figures")
    parser.add_argument("--quick", action="store_true",
                        help="2 images, 50 samples, two batch sizes, MobileNetV2 at 32x32: every figure, well under "
                        "a minute.")
    parser.add_argument("--save", action="store_true", help="Keep the figures in docs/figures/engine.json (the docs).")
    args = parser.parse_args()
    sizes = run_sizes(parser, args, FULL, QUICK)
    num_samples, count, naive_images = sizes["num_samples"], sizes["images"], sizes["naive_images"]

    configure_tensorflow(1)
    with threadpool_limits(1):
        started = time.perf_counter()
        make_rectangles(sizes["generated"], seed=1)
        generator_rate = sizes["generated"] / (time.perf_counter() - started)
        print(f"rectangles generator: {generator_rate:.0f} images/s", flush=True)

        model_path = args.model or default_model_path("rectangles")
        if not model_path.exists():
            from models.cnn import train

            print(f"training the demo model into {model_path} ...", flush=True)
            train("rectangles", model_path)
        classifier = load_classifier(model_path)
        images = load_dataset("rectangles").x_val[:count]
        result = {"num_samples": num_samples, "rectangles_images_per_s": generator_rate}
        result.update(measure("64x64 rectangles CNN", images, classifier, num_samples, naive_images,
                              sizes["batch_sizes"]))

        if not args.skip_224:
            import keras

            side = sizes["mobilenet_side"]
            mobilenet = keras.applications.MobileNetV2(weights=None, input_shape=(side, side, 3))
            metadata = ModelMetadata(class_names=[str(i) for i in range(1000)], input_shape=[side, side, 3])
            big = Classifier(mobilenet, metadata, "")
            big_images = smooth_colour_images(1, side, np.random.default_rng(0))
            figures = measure(f"{side}x{side} MobileNetV2", big_images, big, num_samples, 1,
                              sizes["mobilenet_batch_sizes"])
            result.update({f"mobilenet224_{key}": value for key, value in figures.items()})
            for name in ("default", "fixed", "auto"):
                result[f"mobilenet_{name}_s"] = figures[f"{name}_s"]
    finish("engine", result, args.save)


if __name__ == "__main__":
    main()

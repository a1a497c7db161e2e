"""`python -m benchmarks.peers`: the engine side by side with what users would pick instead, in one run.

On the same images of both data sets with a known answer (benchmarks.known_answer), the same model and one thread
per process:
- lime's own `LimeImageExplainer.explain_instance`: the article's settings (quickshift, mean colour, 1000 samples,
  lime's 10-image batches), and with the engine's segmentation and fill (SLIC 50, grey);
- shap's `PartitionExplainer` with an image masker: `blur(16,16)` at 250 / 500 / 1000 / 2000 / 4000 evaluations, and
  `inpaint_telea` at 500;
- the engine: its default, and fixed counts.
Per explanation, averaged: pointing, target share, deletion AUC (the engine's fixed reference, so every method is
judged by one yardstick), model calls (images the model was asked about, counted at the predict function) and
seconds. shap comes from the optional `peers` extra (`pip install -e ".[peers]"`); without it the benchmark says so
and measures the rest. The last line is JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from benchmarks.figures import finish, run_sizes
from benchmarks.known_answer import (
    ANSWER_DATASETS, FIXED_1000, against_the_answer, child_init, classifier, known_answer, mean_figures,
)

SHAP_EVALS = (250, 500, 1000, 2000, 4000)
LIME_ENGINE_SEGMENTS = "lime explain_instance: the engine's default segmentation and fill, 1000"
OURS_FIXED = (256, 1000)
_warm: set = set()


def shap_available() -> bool:
    try:
        importlib.import_module("shap")
    except ImportError:
        return False
    return True


class CountingModel:
    """The model's predict function, counting the images it is asked about."""

    def __init__(self, model_path: str):
        self.model = classifier(model_path)
        self.calls = 0

    def __call__(self, images) -> np.ndarray:
        images = np.asarray(images, dtype=np.float32)
        self.calls += len(images)
        return self.model.predict(images)


def explain_with(method: dict, model: CountingModel, image: np.ndarray, label: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(segments, weight per segment, model calls) for `label` by one method; shap's pixel map becomes its cells
    (pixels that share one value) so that every method is scored the same way. The engine's calls are those of its
    samples: its faithfulness curves (about 20 images more) are this benchmark's yardstick, not its method."""
    kind = method["kind"]
    if kind == "ours":
        from worker.engine import ExplainParams, explain

        result = explain(image, model, ExplainParams(**method["params"]), true_label=label,
                         input_shape=model.model.input_shape)
        return result.segments, result.labels[label].weights, result.sampling.model_calls
    if kind == "lime":
        from lime.lime_image import LimeImageExplainer

        from worker.engine import ExplainParams
        from worker.engine.segmentation import segment

        options = {}
        if method.get("engine_segments"):
            params = ExplainParams()
            options = {"segmentation_fn": lambda im: segment(im, params), "hide_color": lime_hide_color(params.hide)}
        with contextlib.redirect_stderr(io.StringIO()):  # lime's progress bar
            explanation = LimeImageExplainer(random_state=0).explain_instance(
                image, model, labels=(label,), top_labels=None, num_samples=method["samples"], random_seed=0, **options)
        weights = np.zeros(int(explanation.segments.max()) + 1)
        for feature, weight in explanation.local_exp[label]:
            weights[feature] = weight
        return explanation.segments, weights, model.calls
    import shap

    masker = shap.maskers.Image(method["masker"], image.shape)
    values = shap.Explainer(model, masker)(
        image[None], max_evals=method["evals"], batch_size=256, outputs=[label], silent=True
    ).values[0, ..., 0].sum(axis=-1)
    cells, segments = np.unique(values, return_inverse=True)
    return segments.reshape(values.shape).astype(np.int32), cells, model.calls


def lime_hide_color(hide: str) -> float | None:
    """lime's hide_color for one of the engine's fills on images in 0..1 (None: lime's mean colour)."""
    if hide == "blur":
        raise ValueError("lime has no blurred fill")
    named = {"mean": None, "grey": 0.5, "black": 0.0}
    return named[hide] if hide in named else float(hide)


def measure(job: tuple) -> dict:
    from worker.engine.faithfulness import faithfulness_curves

    method, model_path, image, mask, label = job
    model = CountingModel(model_path)
    if method["kind"] == "shap" and method["masker"] not in _warm:  # numba compiles shap's partition code once
        explain_with(method, model, image, label)
        _warm.add(method["masker"])
    model.calls = 0
    started = time.perf_counter()
    segments, weights, calls = explain_with(method, model, image, label)
    seconds = time.perf_counter() - started
    pointing, share = against_the_answer(segments, weights, mask)
    _, deletion_auc, _, _ = faithfulness_curves(
        model.model.predict, image.astype(np.float32), segments, weights, label, (0.0, 1.0), 256,
        {"sampling_s": 0.0, "model_s": 0.0},
    )
    return {"pointing": pointing, "target_share": share, "deletion_auc": deletion_auc, "model_calls": calls,
            "seconds": seconds}


def methods(with_shap: bool, quick: bool) -> dict[str, dict]:
    rows = {
        "ours: default": {"kind": "ours", "params": {}},
        **{f"ours: {n} samples": {"kind": "ours", "params": {"num_samples": n}} for n in OURS_FIXED},
        "ours: lime's way, 1000 independent samples, lime's fit": {
            "kind": "ours", "params": FIXED_1000},
        "lime explain_instance: article (quickshift, mean, 1000)": {"kind": "lime", "samples": 1000},
        LIME_ENGINE_SEGMENTS: {"kind": "lime", "samples": 1000, "engine_segments": True},
    }
    if with_shap:
        for evals in SHAP_EVALS[:2] if quick else SHAP_EVALS:
            rows[f"shap partition, blur(16,16), {evals}"] = {"kind": "shap", "masker": "blur(16,16)", "evals": evals}
        rows["shap partition, inpaint_telea, 500"] = {"kind": "shap", "masker": "inpaint_telea", "evals": 500}
    return rows


HEADER = ("| data set | method | pointing | target share | deletion AUC | model calls | s/explanation |\n"
          "|---|---|---|---|---|---|---|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=None, help="Images per data set (default 20, --quick: 5).")
    parser.add_argument("--quick", action="store_true", help="5 images per data set, shap up to 500 evaluations.")
    parser.add_argument("--processes", type=int, default=0, help="Worker processes (0: one per core).")
    parser.add_argument("--save", action="store_true", help="Keep the figures in docs/figures/peers.json (the docs).")
    args = parser.parse_args()

    from core.settings import cpu_count

    started = time.perf_counter()
    with_shap = shap_available()
    if not with_shap:
        print("shap is not installed: its rows are left out (install the optional extra: pip install -e '.[peers]')")
    count = run_sizes(parser, args, full={"images": 20}, quick={"images": 5})["images"]
    rows = methods(with_shap, args.quick)
    table: dict[tuple[str, str], dict] = {}
    processes = args.processes or cpu_count()
    with ProcessPoolExecutor(processes, initializer=child_init) as pool:
        answers = {name: known_answer(name, pool, count) for name in ANSWER_DATASETS}
        print(f"{count} images per data set, {processes} processes, 1 thread each\n\n{HEADER}")
        for name, method in rows.items():
            for dataset, answer in answers.items():
                jobs = [(method, answer.model_path, answer.images[i], answer.masks[i], int(answer.labels[i]))
                        for i in range(len(answer.images))]
                figures = list(pool.map(measure, jobs))
                table[dataset, name] = mean_figures(figures)
                f = table[dataset, name]
                print(f"| {dataset} | {name} | {f['pointing']:.2f} | {f['target_share']:.2f} | "
                      f"{f['deletion_auc']:.3f} | {f['model_calls']:.0f} | {f['seconds']:.3f} |", flush=True)
    print()
    result = {}
    for dataset, prefix in (("rectangles", ""), ("shapes", "second_")):
        ours = table[dataset, "ours: default"]
        result |= {f"{prefix}ours_pointing": ours["pointing"], f"{prefix}ours_target_share": ours["target_share"],
                   f"{prefix}ours_model_calls": ours["model_calls"], f"{prefix}ours_seconds": ours["seconds"],
                   f"{prefix}lime_pointing": table[dataset, "lime explain_instance: article (quickshift, mean, 1000)"]["pointing"],
                   f"{prefix}lime_engine_segments_pointing": table[dataset, LIME_ENGINE_SEGMENTS]["pointing"]}
        if with_shap:
            shap_rows = [(evals, table[dataset, f"shap partition, blur(16,16), {evals}"])
                         for evals in SHAP_EVALS if (dataset, f"shap partition, blur(16,16), {evals}") in table]
            for evals, figures in shap_rows:
                result[f"{prefix}shap_pointing_{evals}"] = figures["pointing"]
                result[f"{prefix}shap_target_share_{evals}"] = figures["target_share"]
            # the fewest evaluations from which shap matches the default at every count measured
            matching = [evals for i, (evals, _) in enumerate(shap_rows)
                        if all(figures["pointing"] >= ours["pointing"] for _, figures in shap_rows[i:])]
            result[f"{prefix}shap_evals_to_match"] = matching[0] if matching else None
            nearest = min(shap_rows, key=lambda row: abs(row[0] - ours["model_calls"]))
            print(f"{dataset}: the default ({ours['model_calls']:.0f} model calls) points at the answer "
                  f"{ours['pointing']:.2f} of the time (target share {ours['target_share']:.2f}); shap's partition "
                  f"explainer with blur at {nearest[0]} evaluations {nearest[1]['pointing']:.2f} "
                  f"({nearest[1]['target_share']:.2f}); shap needs "
                  + (f"{matching[0]} evaluations to match it" if matching else f"more than {SHAP_EVALS[-1]} evaluations"
                     " to match it (not reached)"))
    print(f"wall time {time.perf_counter() - started:.0f} s")
    rows = [{"dataset": dataset, "method": name} | {k: round(v, 4) for k, v in row.items()}
            for (dataset, name), row in table.items()]
    finish("peers", result, args.save, kept={"images": count, "rows": rows})


if __name__ == "__main__":
    main()

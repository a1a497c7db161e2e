"""The benchmarks' last figures, kept as JSON in docs/figures/, and the docs' tables rendered from them.

A benchmark run with `--save` writes docs/figures/<benchmark>.json: its result (the JSON line it prints) with the
date, the commit and the machine's cores. `python -m benchmarks.figures` rewrites every block of the docs that reads

    <!-- figures scale.table -->
    ...
    <!-- /figures -->

with what the renderer of that name (`RENDERERS` below) makes of the saved JSON, so that no measured figure in the
docs is typed by hand; `--check` fails, naming the files, when a block differs from what the JSON says (the docs
tests run it).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from core.settings import cpu_count

REPO = Path(__file__).resolve().parent.parent
FIGURES = REPO / "docs" / "figures"
BLOCK = re.compile(r"(<!-- figures (?P<name>[\w.]+) -->\n)(?P<body>.*?)(<!-- /figures -->)", re.DOTALL)


def finish(benchmark: str, result: dict, save_it: bool, kept: dict | None = None) -> None:
    """A benchmark's end: its result as the last line, JSON, floats to 4 places; with --save, that and `kept` (what
    the docs' tables need besides) in docs/figures/<benchmark>.json."""
    result = {key: rounded(value) if isinstance(value, float) else value for key, value in result.items()}
    print(json.dumps(result))
    if save_it:
        print(f"saved {save(benchmark, result | (kept or {}))}")


def run_sizes(parser: argparse.ArgumentParser, args, full: dict, quick: dict) -> dict:
    """What a full run or --quick measures, an option given on the command line winning over either; --quick
    measures too little for the docs, so --quick --save is refused."""
    if args.quick and args.save:
        parser.error("--quick measures too little for the docs' figures: --save only a full run")
    chosen = quick if args.quick else full
    return {key: value if getattr(args, key, None) is None else getattr(args, key) for key, value in chosen.items()}


def rounded(value: float) -> float:
    """4 decimal places, or 3 significant digits for a value too small for them (a 1e-16 difference is not 0)."""
    return round(value, 4) if value == 0 or abs(value) >= 1e-3 else float(f"{value:.3g}")


def commit() -> str:
    """The checkout's commit, marked when tracked files differ from it."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True,
                           text=True).stdout.strip()
    return head + ("+changes" if dirty else "")


def save(benchmark: str, result: dict) -> Path:
    """Keep a benchmark's result with where and when it was measured."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    path = FIGURES / f"{benchmark}.json"
    path.write_text(json.dumps({
        "benchmark": benchmark,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "commit": commit(),
        "cores": cpu_count(),
        "result": result,
    }, indent=1) + "\n")
    return path


def load(benchmark: str) -> dict:
    return json.loads((FIGURES / f"{benchmark}.json").read_text())


def provenance(saved: dict) -> str:
    return (f"*`python -m benchmarks.{saved['benchmark']}`, {saved['date']}, commit {saved['commit']}, "
            f"{saved['cores']} cores.*")


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def scale_table(saved: dict) -> str:
    r = saved["result"]
    sizes = [("2k", "2,000"), ("20k", "20,000")] + ([("100k", "100,000")] if "overhead_ms_100k" in r else [])
    rows = [[label, f"{r[f'enqueue_per_s_{key}']:.0f}", f"{r[f'producer_peak_mb_{key}']:.0f}",
             f"{r[f'redis_peak_mb_{key}']:.2f}", f"{r[f'db_kb_per_image_{key}']:.1f}", f"{r[f'overhead_ms_{key}']:.1f}",
             f"{r[f'overhead_process_ms_{key}']:.1f}"] for key, label in sizes]
    return table(["images", "enqueue, images/s", "producer peak, MB", "Redis peak, MB", "database, KB/image",
                  "overhead, ms/image (wall)", "overhead, ms/image (process)"], rows) + (
        f"\n\nBy reference (`--images reference`, 2,000 images, explained): {r['db_kb_per_image_reference']:.1f} KB per "
        f"image in the database.\n\n{provenance(saved)}")


def scale_million(saved: dict) -> str:
    """What a million 64x64 images cost in each store, scaled from the largest size measured."""
    r = saved["result"]
    large = "100k" if "overhead_ms_100k" in r else "20k"
    million = 1_000_000
    rows = [
        ["producer", f"{r[f'producer_peak_mb_{large}']:.0f} MB peak, plus about 0.1 KB per listed file "
                     f"(~100 MB at a million)", f"{million / r['enqueue_per_s'] / 60:.0f} min to check and store"],
        ["Redis", f"{r[f'redis_peak_mb_{large}']:.1f} MB peak: the window (MAX_QUEUED tasks), whatever the job", "-"],
        ["database, images by copy", f"{r['db_kb_per_image'] * million / 2**20:.1f} GB", "-"],
        ["database, images by reference", f"{r['db_kb_per_image_reference'] * million / 2**20:.1f} GB", "-"],
        ["the pipeline's own time", f"{r[f'overhead_ms_{large}'] * million / 1000 / 3600:.1f} h of wall clock on one "
                                    "2-process worker, besides the explanations", "-"],
    ]
    return table(["store", "a million images", "time"], rows) + f"\n\n{provenance(saved)}"


def _f(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def quality_levers(saved: dict) -> str:
    """Designs x estimators x sample counts: convergence / stability per data set."""
    rows, samples, cells = saved["result"]["tables"]["levers"], [], {}
    for row in rows:
        design, estimator, count = row["setting"].split(", ")
        samples += [count] if count not in samples else []
        cells[(design, estimator), row["dataset"], count] = f"{_f(row['convergence'])} / {_f(row['stability'])}"
    datasets = list(dict.fromkeys(row["dataset"] for row in rows))
    methods = list(dict.fromkeys(key for key, _, _ in cells))
    header = ["design, estimator"] + [f"{dataset}, {count}" for dataset in datasets for count in samples]
    body = [[f"{design}, {estimator}"] + [cells.get(((design, estimator), dataset, count), "-")
                                          for dataset in datasets for count in samples] for design, estimator in methods]
    images = saved["result"]["grid_images"]
    return (f"Convergence / stability, {images} images per data set, at the default segmentation and fill (sample "
            f"counts before rounding up to whole blocks, and the image itself):\n\n" + table(header, body)
            + f"\n\n{provenance(saved)}")


def quality_grid(saved: dict) -> str:
    result, rows = saved["result"], saved["result"]["tables"]["grid"]
    by_setting: dict[str, dict] = {}
    for row in rows:
        by_setting.setdefault(row["setting"], {})[row["dataset"]] = row
    datasets = list(dict.fromkeys(row["dataset"] for row in rows))
    header = ["segmentation, fill", "superpixels"] + [f"{d}: {k}" for d in datasets for k in ("pointing", "stability")]
    body = [[setting, _f(next(iter(found.values()))["segments"], 1)]
            + [_f(found[d].get(k)) for d in datasets for k in ("pointing", "stability")]
            for setting, found in by_setting.items()]
    rule = ("meets the by-construction targets on rectangles, shapes and tagged (glyphs: shown, never chosen on) and "
            "pointing and stability on both trained ones"
            if "construct_grid" in result["tables"] else "meets pointing and stability on both data sets")
    return (table(header, body) + f"\n\nThe grid's choice ({rule}, then the fewest model calls, then the widest "
            f"margin): **{result['grid_choice']}**; the engine's default: {result['default']}."
            f"\n\n{provenance(saved)}")


def quality_full(saved: dict) -> str:
    result = saved["result"]
    body = [[row["dataset"], row["setting"], _f(row.get("pointing")), _f(row.get("target_share")),
             _f(row.get("deletion_auc"), 3), _f(row.get("stability")), _f(row.get("convergence")),
             _f(row.get("model_calls"), 0), _f(row.get("seconds"), 3)]
            for row in result["tables"]["full"]]
    return (f"{result['full_images']} images per data set:\n\n" + table(
        ["data set", "setting", "pointing", "target share", "deletion AUC", "stability", "convergence", "model calls",
         "s/explanation"], body) + f"\n\n{provenance(saved)}")


def quality_targets(saved: dict) -> str:
    r = saved["result"]
    rows = []
    construct = r.get("construct_targets", {})
    for key, figure, sense in (("construct_pointing_min", "by construction: pointing, lowest data set", ">="),
                               ("construct_leakage_max", "by construction: leakage, highest data set's mean", "<="),
                               ("background_evidence_share_max", "by construction: background evidence share, highest",
                                "<=")):
        if key not in r:
            continue
        target = construct["construct_pointing" if sense == ">=" else (
            "leakage" if "leakage" in key else "background_evidence_share")]
        met = r[key] >= target if sense == ">=" else r[key] <= target
        rows.append(["all four", figure, f"{sense} {target}", _f(r[key], 4), "met" if met else "missed"])
    for prefix, dataset in (("", "rectangles"), ("second_", "shapes")):
        for key, target in r["targets"][dataset].items():
            value = r[f"{prefix}{key}"]
            rows.append([dataset, key, f">= {target}", _f(value), "met" if value >= target else "missed"])
        reference = r.get(f"{prefix}reference_pointing")
        rows.append([dataset, "pointing of lime's 20,000-sample reference", "-", _f(reference), "-"])
    most = r.get("max_model_calls", 600)
    for prefix, dataset in (("", "rectangles"), ("second_", "shapes")):
        calls, seconds = r[f"{prefix}model_calls"], r[f"{prefix}seconds"]
        fixed_calls, fixed_seconds = r[f"fixed_{prefix}model_calls"], r[f"fixed_{prefix}seconds"]
        rows.append([dataset, "model calls per explanation", f"<= {most}", _f(calls, 0),
                     "met" if calls <= most else "missed"])
        rows.append([dataset, "seconds per explanation, against lime's 1000", f"<= {fixed_seconds:.3f}",
                     f"{seconds:.3f} ({seconds / fixed_seconds:.2f}x; calls {calls / fixed_calls:.2f}x)",
                     "met" if seconds <= fixed_seconds else "missed"])
    rows.append(["all", "the benchmark's own wall time", "<= 15 min", f"{r['wall_s'] / 60:.1f} min",
                 "met" if r["wall_s"] <= 900 else "missed"])
    return table(["data set", "figure", "target", "default", ""], rows) + f"\n\n{provenance(saved)}"


def construct_rows(rows: list[dict]) -> list[list[str]]:
    return [[row["dataset"], row["setting"], _f(row.get("construct_pointing"), 3), _f(row.get("leakage"), 4),
             _f(row.get("leakage_worst"), 4), _f(row.get("background_evidence_share"), 4),
             f"{row['evidence_responding']:.0f}, {row['background_responding']:.0f} of {row['images']:.0f}"]
            for row in rows]


CONSTRUCT_HEADER = ["data set", "setting", "pointing", "leakage", "leakage, worst image", "background evidence share",
                    "images responding (evidence, background)"]


def construct_table(section: str, images_key: str, intro: str):
    """A renderer of one by-construction section of quality.json: `intro` after the image count, then its rows."""

    def render(saved: dict) -> str:
        result = saved["result"]
        return (f"{result[images_key]} images per data set{intro}:\n\n"
                + table(CONSTRUCT_HEADER, construct_rows(result["tables"][section])) + f"\n\n{provenance(saved)}")

    return render


def outlines_table(saved: dict) -> str:
    result = saved["result"]
    rows = [[row["setting"], row["dataset"], _f(row["superpixels"], 1), _f(row["undersegmentation_error"], 4),
             _f(row["boundary_recall"], 3), _f(row["ms"], 1)] for row in result["rows"]]
    return (table(["segmentation", "data set", "superpixels", "undersegmentation error", "boundary recall",
                   "ms/image (64x64)"], rows) + f"\n\n{provenance(saved)}")


def peers_table(saved: dict) -> str:
    r = saved["result"]
    by_method: dict[str, dict] = {}
    for row in r["rows"]:
        by_method.setdefault(row["method"], {})[row["dataset"]] = row
    body = [[method] + [cell for dataset in ("rectangles", "shapes") for cell in (
        _f(found[dataset]["pointing"]), _f(found[dataset]["target_share"]), _f(found[dataset]["deletion_auc"], 3))]
            + [_f(found["rectangles"]["model_calls"], 0), _f(found["rectangles"]["seconds"], 3)]
            for method, found in by_method.items()]
    matched = []
    for prefix, dataset in (("", "rectangles"), ("second_", "shapes")):
        evals = r.get(f"{prefix}shap_evals_to_match")
        matched.append(f"{dataset}: " + (f"{evals} evaluations" if evals else "not within the evaluations measured"))
    return (f"{r['images']} images per data set:\n\n" + table(
        ["method", "rectangles: pointing", "target share", "deletion AUC", "shapes: pointing", "target share",
         "deletion AUC", "model calls", "s/explanation (rectangles)"], body)
            + f"\n\nshap's partition explainer (blur) matches the default's pointing at: {'; '.join(matched)}."
            + f"\n\n{provenance(saved)}")


def engine_table(saved: dict) -> str:
    r = saved["result"]
    rows = [["rectangles CNN, 64x64", _f(r["naive_s"], 3), _f(r["engine_s"], 3), _f(r["limit_s"], 3),
             f"{r['naive_over_engine']:.0f}x", _f(r["engine_over_limit"])]]
    if "mobilenet224_naive_s" in r:
        rows.append(["MobileNetV2(weights=None), 224x224", _f(r["mobilenet224_naive_s"], 2),
                     _f(r["mobilenet224_engine_s"], 2), _f(r["mobilenet224_limit_s"], 2),
                     f"{r['mobilenet224_naive_over_engine']:.1f}x", _f(r["mobilenet224_engine_over_limit"])])
    first = table(["model, input", "naive s (the article's way)", "engine s", "limit s (model-bound)", "naive/engine",
                   "engine/limit"], rows)
    second_rows = [["rectangles CNN, 64x64", f"{r['default_s']:.3f} s, {r['default_model_calls']:.0f}",
                    f"{r['fixed_s']:.3f} s, {r['fixed_model_calls']:.0f}",
                    f"{r['auto_s']:.3f} s, {r['auto_model_calls']:.0f} ({r['auto_stops']})", _f(r["default_over_fixed_s"])]]
    if "mobilenet224_default_s" in r:
        second_rows.append(["MobileNetV2(weights=None), 224x224",
                            f"{r['mobilenet224_default_s']:.2f} s, {r['mobilenet224_default_model_calls']:.0f}",
                            f"{r['mobilenet224_fixed_s']:.2f} s, {r['mobilenet224_fixed_model_calls']:.0f}",
                            f"{r['mobilenet224_auto_s']:.2f} s, {r['mobilenet224_auto_model_calls']:.0f} "
                            f"({r['mobilenet224_auto_stops']})", _f(r["mobilenet224_default_over_fixed_s"])])
    second = table(["model, input", "default: s, model calls", "lime's 1000: s, model calls", "auto: s, model calls",
                    "default / lime's 1000, seconds"], second_rows)
    return (f"lime's settings, {r['num_samples']} samples:\n\n{first}\n\nAt the default's segmentation and fill:\n\n"
            f"{second}\n\n{provenance(saved)}")


def pipeline_table(saved: dict) -> str:
    r = saved["result"]
    rows = [[str(r["images"]), _f(r["pipeline_s"], 1), _f(r["engine_sequential_s"], 1), _f(r["naive_s"], 2),
             _f(r["engine_sequential_over_pipeline"]), f"{r['naive_over_pipeline']:.0f}"]]
    cpu = ", ".join(f"{role} {seconds} s" for role, seconds in r["cpu_s_by_role"].items())
    return (table(["images", "pipeline s", "engine alone, sequential s", "naive s per image",
                   "engine sequential / pipeline", "naive / pipeline, per image"], rows)
            + f"\n\nCPU seconds meanwhile, by role: {cpu}.\n\n{provenance(saved)}")


def audit_table(saved: dict) -> str:
    r = saved["result"]
    rows = [
        ["shortcut group vs the leaning images: precision / recall / F1",
         f"{r['shortcut_precision']:.2f} / {r['shortcut_recall']:.2f} / {r['shortcut_f1']:.2f}",
         ">= 0.8 / >= 0.8 / -"],
        ["leaning images (tagged validation images the tag decides)", str(r["leaning_images"]), "-"],
        ["the confused cell's mean map peaks on the tag", str(r["tag_peak"]).lower(), "true"],
        ["the summary names the shortcut group first", str(r["shortcut_named_first"]).lower(), "true"],
        ["pointing equals the independent computation (rectangles, shapes)", str(r["evidence_pointing"]).lower(), "true"],
        ["largest difference in evidence share", f"{r['evidence_max_diff']:.1e}", "<= 1e-9"],
        ["boxes give what masks give", str(r["boxes_equal_masks"]).lower(), "true"],
        ["audit of 10,000 / 100,000 explanations, s", f"{r['audit_s_10k']:.1f} / {r['audit_s_100k']:.1f}", "- / <= 60"],
        ["growth from 10k to 100k (1.0 = linear)", f"{r['audit_growth']:.2f}", "<= 1"],
        ["audit's peak memory at 100,000, MB", f"{r['audit_peak_mb_100k']:.0f}", "<= 1,000"],
        ["audit at 100,000 with every map remade from the weights, s", f"{r['audit_remade_s_100k']:.1f}", "-"],
        ["report of 100,000 explanations (20,000 mistakes): size MB / peak MB / s",
         f"{r['report_mb_100k']:.1f} / {r['report_peak_mb_100k']:.0f} / {r['report_s_100k']:.1f}", "<= 50 / <= 1,000 / -"],
        ["maps at save time, share of a worker's time per image", f"{r['maps_share_of_worker_time']:.2%}", "<= 5%"],
    ]
    if "classes_1000_audit_s" in r:
        rows += [
            [f"audit of a 1,000-class run ({r['classes_1000_explanations']:,} explanations), s / peak MB",
             f"{r['classes_1000_audit_s']:.1f} / {r['classes_1000_audit_peak_mb']:.0f}", "-"],
            ["its report: size MB / s", f"{r['classes_1000_report_mb']:.1f} / {r['classes_1000_report_s']:.1f}",
             "<= 50 / -"],
        ]
    full = r.get("full_run", saved)  # a --big run's --save keeps the last full run's figures, and when they were made
    return table(["figure", "measured", "target"], rows) + "\n\n" + provenance(saved | full)


def audit_million(saved: dict) -> str:
    """The audit and the report of a million stored explanations (`benchmarks.audit --big`), when measured."""
    r = saved["result"]
    if "audit_s_1m" not in r:
        return "Not measured yet: `python -m benchmarks.audit --big --save`."
    big = r.get("big_run", saved)  # a full run's --save keeps the last --big run's figures, and when they were made
    runs = [("10", r["classes_10_explanations_1m"]), ("1000", r["classes_1000_explanations_1m"])]
    rows = [[f"{count:,} explanations of {int(classes):,} classes",
             f"{r[f'classes_{classes}_audit_s_1m']:.0f} / {r[f'classes_{classes}_audit_peak_mb_1m']:.0f}",
             f"{r[f'classes_{classes}_planted_precision_1m']:.2f} / {r[f'classes_{classes}_planted_recall_1m']:.2f}",
             f"{r[f'classes_{classes}_report_mb_1m']:.1f} / {r[f'classes_{classes}_report_peak_mb_1m']:.0f} / "
             f"{r[f'classes_{classes}_report_s_1m']:.0f}"] for classes, count in runs]
    rows.append(["target", "<= 600 / <= 1,000", ">= 0.8 / >= 0.8", "<= 50 / <= 1,000 / -"])
    return table(["run", "audit: s / peak MB", "planted shortcut: precision / recall", "report: MB / peak MB / s"],
                 rows) + (f"\n\n*`python -m benchmarks.audit --big`, {big['date']}, commit {big['commit']}, "
                          f"{saved['cores']} cores.*")


REALSIZE_NAMES = {"mobilenet_v2": "MobileNetV2", "resnet50": "ResNet50", "efficientnet_b0": "EfficientNetB0"}


def realsize_table(saved: dict) -> str:
    """Per network: each runtime's forward passes and explanations, and producer local keras against auto."""
    r = saved["result"]
    rows = []
    for name, m in r["models"].items():
        rows.append([
            REALSIZE_NAMES.get(name, name), f"{m['keras_ms']:.1f} / {m['openvino_ms']:.1f}",
            f"{m['runtime_speedup']:.2f}x", f"{m['max_prob_diff']:.1e}",
            f"{m['keras_explain_s']:.2f} / {m['openvino_explain_s']:.2f}",
            f"{m['keras_over_limit']:.3f} / {m['openvino_over_limit']:.3f}", f"{m['top5_same']} of {m['top5_compared']}",
            f"{m['local_keras_s_per_image']:.2f} / {m['local_auto_s_per_image']:.2f} ({m['local_images']} images)",
            f"**{m['speedup']:.2f}x**",
            f"{m['local_keras_explain_s']:.2f} / {m['local_auto_explain_s']:.2f} "
            f"({m['local_keras_explain_s'] / m['local_auto_explain_s']:.2f}x)", m["runtime_chosen"],
        ])
    return (f"{r['side']}x{r['side']}, 1000 classes, one thread unless said:\n\n" + table(
        ["network", "ms per image, keras / openvino", "openvino speed", "max \\|dp\\|",
         "explanation s, keras / openvino", "engine/limit, keras / openvino", "top-5 the same",
         "producer local s/image (2 processes), keras / auto", "auto over keras",
         "s per explanation in those workers, keras / auto", "auto chose"], rows)
        + f"\n\n{provenance(saved)}")


def realsize_targets(saved: dict) -> str:
    r = saved["result"]
    rows = []
    for name, target in (("mobilenet_v2", 2.0), ("resnet50", 1.4)):
        if f"realsize_speedup_{name}" in r:
            value = r[f"realsize_speedup_{name}"]
            rows.append([f"{REALSIZE_NAMES[name]}: auto over keras, end to end", f">= {target}", f"{value:.2f}",
                         "met" if value >= target else "missed"])
    used = [m["max_prob_diff"] for m in r["models"].values() if m["runtime_chosen"] == "openvino"]
    refused = [REALSIZE_NAMES.get(name, name) for name, m in r["models"].items() if m["runtime_chosen"] == "keras"]
    rows += [
        ["largest probability difference between the runtimes, on the photographs (every network)", "<= 1e-5",
         f"{r['max_prob_diff']:.1e}", "met" if r["max_prob_diff"] <= 1e-5 else "missed"],
        ["the same, of the networks auto served by OpenVINO (it kept "
         + (", ".join(refused) if refused else "none") + " on Keras)", "<= 1e-5",
         f"{max(used):.1e}" if used else "-", ("met" if max(used) <= 1e-5 else "missed") if used else "-"],
        ["explanations with the same top-5 superpixels through both", ">= 95%", f"{r['top5_same_share']:.0%}",
         "met" if r["top5_same_share"] >= 0.95 else "missed"],
        ["engine / limit at 224x224, through the runtime auto chose (the largest)", "<= 1.05",
         f"{r['engine_over_limit_224']:.3f}", "met" if r["engine_over_limit_224"] <= 1.05 else "missed"],
    ]
    return table(["figure", "target", "measured", ""], rows) + f"\n\n{provenance(saved)}"


def realsize_threads(saved: dict) -> str:
    """2 processes x 1 thread against 1 x 2, images per second of each runtime's forward passes."""
    r = saved["result"]
    rows = []
    for name, m in r["models"].items():
        for runtime in ("keras", "openvino"):
            two, one = m[f"{runtime}_2x1_images_per_s"], m[f"{runtime}_1x2_images_per_s"]
            rows.append([REALSIZE_NAMES.get(name, name), runtime, f"{two:.1f}", f"{one:.1f}", f"{two / one:.2f}"])
        if "keras_2x1_onednn_off_images_per_s" in m:
            off = m["keras_2x1_onednn_off_images_per_s"]
            rows.append([REALSIZE_NAMES.get(name, name), "keras, oneDNN off", f"{off:.1f}", "-",
                         f"on/off {m['keras_2x1_images_per_s'] / off:.2f}"])
    return (table(["network", "runtime", "2 processes x 1 thread, images/s", "1 process x 2 threads, images/s",
                   "2x1 / 1x2"], rows) + f"\n\n{provenance(saved)}")


def realsize_choices(saved: dict) -> str:
    """What auto said, per network, in the benchmark's producer local runs."""
    lines = [f"- {REALSIZE_NAMES.get(name, name)}: `{m['auto_line']}`" for name, m in saved["result"]["models"].items()]
    return "\n".join(lines) + f"\n\n{provenance(saved)}"


def runs_table(saved: dict) -> str:
    """Recorded runs of the test suite (tests/suite_report.py, `--record-timings`): time, outcome, what ran beside."""
    rows = [[run["label"], f"`{run['arguments'] or '(everything)'}`", str(run["processes"]),
             f"{run['wall_s'] / 60:.1f}", f"{run['passed']} / {run['failed']} / {run['skipped']}",
             f"{run['lost']} / {run['duplicated']} ({run['fault_rows']} faults)", run["neighbour"] or "nothing",
             f"{run['date']}, {run['commit']}, {run['cores']} cores"]
            for run in saved["runs"]]
    return table(["run", "pytest arguments", "xdist processes", "wall, min", "passed / failed / skipped",
                  "lost / duplicated", "beside it", "when"], rows)


def suite_runs(saved: dict) -> str:
    """The runs, and every run's slowest ten side by side (a blank: not among that run's ten)."""
    runs = saved["runs"]
    seconds = [dict(run["slowest"]) for run in runs]
    tests = sorted({nodeid for ten in seconds for nodeid in ten},
                   key=lambda nodeid: (-max(ten.get(nodeid, 0) for ten in seconds), nodeid))  # ties: by name
    slowest = [[f"`{nodeid}`", *(f"{ten[nodeid]:.1f}" if nodeid in ten else "" for ten in seconds)] for nodeid in tests]
    return (runs_table(saved) + "\n\nThe slowest ten tests of each run, in seconds (setup, call and teardown):\n\n"
            + table(["test", *(run["label"] for run in runs)], slowest))


RENDERERS = {
    "scale.table": (scale_table, "scale"), "scale.million": (scale_million, "scale"),
    "quality.levers": (quality_levers, "quality"), "quality.grid": (quality_grid, "quality"),
    "quality.full": (quality_full, "quality"), "quality.targets": (quality_targets, "quality"),
    "quality.construct": (construct_table("construct_full", "full_images", " (fewer where the model gets fewer right)"),
                          "quality"),
    "quality.construct_levers": (construct_table("construct_levers", "grid_images", ", at the default segmentation and "
                                                 "fill"), "quality"),
    "quality.construct_grid": (construct_table("construct_grid", "grid_images", ""), "quality"),
    "outlines": (outlines_table, "outlines"),
    "peers.table": (peers_table, "peers"), "engine.table": (engine_table, "engine"),
    "pipeline.table": (pipeline_table, "pipeline"), "audit.table": (audit_table, "audit"),
    "audit.million": (audit_million, "audit"),
    "suite.runs": (suite_runs, "suite"), "suite_inner.runs": (runs_table, "suite_inner"),
    "realsize.table": (realsize_table, "realsize"), "realsize.targets": (realsize_targets, "realsize"),
    "realsize.threads": (realsize_threads, "realsize"), "realsize.choices": (realsize_choices, "realsize"),
}


def render_file(path: Path) -> str:
    def replace(match: re.Match) -> str:
        renderer, benchmark = RENDERERS[match.group("name")]
        return f"{match.group(1)}{renderer(load(benchmark))}\n{match.group(4)}"

    return BLOCK.sub(replace, path.read_text())


def documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def stale() -> list[Path]:
    """The documents whose figures differ from their benchmarks' saved JSON (relative to the repository)."""
    return [path.relative_to(REPO) for path in documents() if render_file(path) != path.read_text()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="Change nothing; fail if a document is out of date.")
    args = parser.parse_args()
    out_of_date = stale()
    if args.check and out_of_date:
        print(f"out of date with docs/figures: {', '.join(map(str, out_of_date))} (run python -m benchmarks.figures)",
              file=sys.stderr)
        raise SystemExit(1)
    for path in out_of_date if not args.check else []:
        (REPO / path).write_text(render_file(REPO / path))
    print("rendered" if not args.check else "up to date", ", ".join(map(str, out_of_date)) or "nothing changed")


if __name__ == "__main__":
    main()

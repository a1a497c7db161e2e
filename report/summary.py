"""A run's summary as the commands and the report show it: one function, every caller.

Accuracy counts only images with a true label; a run without labels shows n/a and the predicted classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from audit.service import EvidenceRate, evidence_left_out, evidence_rates
from db import reads
from db.models import Run
from models.contract import InputContract

SHOWN_CLASSES = 10  # a line per class names at most this many: with more, the most telling first
SHOWN_MISTAKES = 20  # the most confident mistakes a command lists at the end of a run


@dataclass
class RunSummary:
    run: Run
    counts: reads.RunCounts
    rows: list[tuple[str, str]]
    warnings: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)  # [{source, reason}] left out with --skip-bad


def summarise_run(session: Session, run: Run) -> RunSummary:
    counts = reads.run_counts(session, run.id)
    wall = reads.run_wall_seconds(run)
    rows = [
        ("status", run.status),
        ("images", str(counts.total)),
        ("explained", str(counts.ok)),
        ("failed", str(counts.failed)),
        ("remaining", str(counts.remaining)),
    ]
    if counts.remaining:
        waiting = counts.remaining - counts.queued - counts.running
        rows.append(("remaining are", f"{waiting} waiting in the database, {counts.queued} queued in the broker, "
                                      f"{counts.running} running"))
    if counts.accuracy is not None:
        rows.append(("accuracy", f"{counts.accuracy:.2%} ({counts.correct} of {counts.labelled} labelled images)"))
        rows.append(("misclassified", str(counts.misclassified)))
        if len(run.class_names) > SHOWN_CLASSES and counts.misclassified:
            rows.append(("most mistakes", most_mistakes_line(session, run)))
    elif counts.ok:
        predicted = reads.predicted_classes(session, run.id)
        shown = ", ".join(f"{name}: {n}" for name, n in predicted[:SHOWN_CLASSES])
        more = f", and {len(predicted) - SHOWN_CLASSES} more classes" if len(predicted) > SHOWN_CLASSES else ""
        rows.append(("accuracy", "n/a (no true labels)"))
        rows.append(("predicted classes", shown + more))
    else:
        rows.append(("accuracy", "-"))
    rows.append(("explained with", describe_settings(run.params)))
    faithfulness = reads.faithfulness_means(session, run.id)
    if faithfulness is not None:
        deletion, insertion, stability = faithfulness
        rows.append((
            "faithfulness (mean)",
            f"deletion AUC {deletion:.3f} (lower is better), insertion AUC {insertion:.3f} (higher is better)"
            + ("" if stability is None else f"; stability {stability:.2f}"),
        ))
    rates = evidence_rates(session, run)
    if rates:
        left_out = evidence_left_out(session, run)
        rows.append(("evidence", evidence_line(rates) + (
            f"; {left_out} images with evidence left out: their true label was not explained (--top-labels)"
            if left_out else "")))
    spread = reads.sampling_spread(session, run.id)
    if spread is not None:
        rows.append(("model calls", sampling_line(spread)))
    rows.append(("input", InputContract(tuple(run.value_range), run.preprocess, run.outputs).describe()))
    rows.append(("runtime", runtime_line(run, reads.runtime_counts(session, run.id))))
    rows.append(("input check", check_line(run.input_check)))
    if run.skipped:
        rows.append(("skipped files", f"{len(run.skipped)} (--skip-bad; listed below)"))
    rows.append(("wall time", "-" if wall is None else f"{wall:.1f} s"))
    if wall and counts.finished:
        rows.append(("images per second", f"{counts.finished / wall:.2f}"))
    rows.append(("model", f"{run.model_path} ({run.model_sha256[:12]})"))
    warnings = [run.input_check["warning"]] if run.input_check and run.input_check.get("warning") else []
    return RunSummary(run, counts, rows, warnings, list(run.skipped or []))


def most_mistakes_line(session: Session, run: Run) -> str:
    """`cat 12, dog 9, ... (the 10 of 1000 classes with the most mistakes, ...)`."""
    ranked = [entry for entry in reads.classes_by_mistakes(session, run.id, limit=SHOWN_CLASSES) if entry.mistakes]
    shown = ", ".join(f"{run.class_names[entry.label]} {entry.mistakes}" for entry in ranked)
    return (f"{shown} (the {len(ranked)} of {len(run.class_names)} classes with the most mistakes, both ways: images "
            f"of the class put in another, and others' put in it; every class: python -m db classes --run {run.id})")


def shown_mistakes(session: Session, summary: RunSummary) -> tuple[list[dict], str | None]:
    """A run's SHOWN_MISTAKES most confident mistakes (reads.misclassified's rows), for a command's listing at the end
    of a run, and the line to print under them that says how to get the rest (None when they are all listed)."""
    rows = reads.misclassified(session, summary.run.id, limit=SHOWN_MISTAKES)
    more = summary.counts.misclassified - len(rows)
    return rows, (f"and {more} more, less confident: python -m db misclassified --run {summary.run.id}"
                  if more > 0 else None)


def sampling_line(spread: reads.SamplingSpread) -> str:
    """What the explanations cost in model calls (the unit of cost on any model), and the samples behind them:
    `513 per image on average (513 samples each)` or, with auto,
    `540 per image on average; samples 257 to 1025 (median 513): 92 settled, 8 at the cap`."""
    calls = f"{spread.mean_model_calls:.0f} per image on average"
    if set(spread.stops) == {"fixed"} and spread.fewest == spread.most:
        return f"{calls} ({spread.fewest} samples each)"
    stops = ", ".join(
        f"{spread.stops[stop]} {'at the cap' if stop == 'cap' else stop}"
        for stop in ("settled", "cap", "fixed") if stop in spread.stops
    )
    return f"{calls}; samples {spread.fewest} to {spread.most} (median {spread.median:g}): {stops}"


def runtime_line(run: Run, counts: dict[str, int]) -> str:
    """`openvino: 2.8x keras on 64 images, max |dp| 3.2e-10 on 64 images (--runtime auto)`: what the input check's
    worker process chose and why; where the run's explanations were computed by more than one runtime (each worker
    process chooses for itself), how many each."""
    choice = (run.input_check or {}).get("runtime")
    if choice:
        line = choice["line"].removeprefix("runtime ")
        line += "" if "as asked" in line else f" (--runtime {run.runtime})"
    elif run.runtime == "keras":
        line = "keras"
    else:
        line = f"{run.runtime}: not chosen yet (the input check says which)"
    if len(counts) > 1 or (counts and choice and choice["runtime"] not in counts):
        line += "; explanations by " + ", ".join(f"{name} {count}" for name, count in counts.items())
    return line


def check_line(check: dict | None) -> str:
    if check is None:
        return "pending (a worker predicts a sample of the images first)"
    if check.get("accuracy") is not None:
        line = f"accuracy {check['accuracy']:.0%} on {check['labelled']} images (guessing scores {check['chance']:.0%})"
    elif "dependence" in check:
        line = (f"{check['images']} unlabelled images, top class {check['confidence']:.1%} on average (uniform "
                f"{check['uniform']:.1%}), image dependence {check['dependence']:.2f}")
    elif "spread" in check:  # a check stored before the figures that hold for any number of classes
        line = f"{check['images']} unlabelled images, probabilities vary by up to {check['spread']:.2f}"
    else:
        line = f"{check['images']} images"
    return line + (": WARNING, see below" if check.get("warning") else ": looks right")


def describe_settings(params: dict) -> str:
    """`slic 50, grey, 512 samples, hadamard masks, adjusted fit`: the explanation settings (worker.engine.ExplainParams
    as a dict) that decide what an explanation shows."""
    kind = params["segmentation"]
    if kind == "slic":
        segmentation = f"slic {params['n_segments']}" + ("" if params.get("slic_lab", True) else " rgb")
    elif kind == "quickshift":
        segmentation = f"quickshift k={params['kernel_size']:g}"
    elif kind == "felzenszwalb":
        segmentation = f"felzenszwalb scale={params.get('scale', 25):g}"
    else:
        segmentation = f"{kind} {params['n_segments']}"
    stability = f", stability over {params['stability_seeds']} more seeds" if params.get("stability_seeds") else ""
    samples = "samples until settled (auto)" if params["num_samples"] == "auto" else f"{params['num_samples']} samples"
    # runs from before the two settings drew lime's masks and used lime's fit (migration 0005 says so in their params)
    method = f"{params.get('design', 'independent')} masks, {params.get('estimator', 'lime')} fit"
    return f"{segmentation}, {params['hide']}, {samples}, {method}{stability}"


def evidence_line(rates: list[EvidenceRate]) -> str:
    """`pointing 92% (ring 95% of 40, plus 88% of 40), evidence share 0.61`: how often the top superpixel lies on the
    user's evidence, per class (the true class; the predicted one for images without), over the images that have it.
    With more than SHOWN_CLASSES classes, those with the lowest pointing: `pointing 80% (lowest: cat 20% of 10, ...,
    and 990 more classes), ...`."""
    images = sum(rate.images for rate in rates)
    pointing = sum(rate.pointing * rate.images for rate in rates) / images
    share = sum(rate.evidence_share * rate.images for rate in rates) / images
    more = ""
    if len(rates) > SHOWN_CLASSES:
        more = f", and {len(rates) - SHOWN_CLASSES} more classes"
        rates = sorted(rates, key=lambda rate: (rate.pointing, -rate.images, rate.class_name))[:SHOWN_CLASSES]
    classes = ", ".join(f"{rate.class_name} {rate.pointing:.0%} of {rate.images}" for rate in rates)
    return f"pointing {pointing:.0%} ({'lowest: ' if more else ''}{classes}{more}), evidence share {share:.2f}"

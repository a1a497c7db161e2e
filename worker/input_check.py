"""The input check of a run: the model's plain predictions on a sample of the run's images, before any LIME,
so that a wrong input contract (pixels on the wrong scale, missing preprocessing, classes in another order)
is told within seconds instead of after a run of confident garbage.

Pure: pixels, labels, a predict function and the run's contract in; figures and a warning out.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np

from models.contract import format_range
from worker.engine.inputs import conform_image
from worker.engine.prediction import PredictFn, as_probabilities

CHECK_IMAGES = 64
# The value ranges models are commonly trained on: 0..1 (x / 255), 0..255 (raw 8-bit), -1..1 (x / 127.5 - 1).
CANDIDATE_RANGES = ((0.0, 1.0), (0.0, 255.0), (-1.0, 1.0))
MIN_LABELLED = 8  # fewer labelled images say too little about accuracy
MIN_IMAGES = 4
CONSTANT_SPREAD = 0.01  # no class probability varies more than this across the images: the model sees no difference
BETTER_BY = 0.25  # accuracy gained by another value range (or class order) that names it as the cause
FIXED_BY = 0.10  # when the run already looks wrong: accuracy above chance that names another range as the fix


def sample_positions(labels: Sequence[int | None], size: int = CHECK_IMAGES) -> list[int]:
    """Up to `size` positions, taking the classes in turn, so a folder sorted by class still gives a mixed sample."""
    by_class: dict[int | None, list[int]] = {}
    for position, label in enumerate(labels):
        by_class.setdefault(label, []).append(position)
    queues = [list(reversed(positions)) for positions in by_class.values()]
    picked: list[int] = []
    while len(picked) < size and queues:
        for queue in queues:
            if queue and len(picked) < size:
                picked.append(queue.pop())
        queues = [queue for queue in queues if queue]
    return sorted(picked)


def _figures(probabilities: np.ndarray, labels: list[int | None]) -> tuple[float | None, float]:
    """(accuracy over the labelled images or None, the largest spread of a class probability across images)."""
    predicted = probabilities.argmax(axis=1)
    known = [(p, label) for p, label in zip(predicted, labels) if label is not None]
    accuracy = sum(int(p == label) for p, label in known) / len(known) if known else None
    spread = float((probabilities.max(axis=0) - probabilities.min(axis=0)).max())
    return accuracy, spread


def _best_class_order(probabilities: np.ndarray, labels: list[int | None]) -> float:
    """The accuracy the predictions would have if the classes were matched in the best other order."""
    from scipy.optimize import linear_sum_assignment

    classes = probabilities.shape[1]
    counts = np.zeros((classes, classes))
    for predicted, label in zip(probabilities.argmax(axis=1), labels):
        if label is not None:
            counts[label, predicted] += 1
    rows, cols = linear_sum_assignment(-counts)
    return float(counts[rows, cols].sum() / counts.sum())


def check_input(
    images: Sequence[np.ndarray],
    labels: Sequence[int | None],
    predict_fn: PredictFn,
    *,
    value_range: Sequence[float],
    input_shape: Sequence[int] | None,
    class_names: Sequence[str],
    model_path: str = "MODEL",
) -> dict:
    """Predict the images as the run will feed them, and with the other common value ranges; return the figures
    and, when the predictions look like a wrong input (at or below chance, or the same for every image), a
    warning that names the likely cause and the option that fixes it."""
    labels = list(labels)
    given = (float(value_range[0]), float(value_range[1]))
    trials = []
    for candidate in [given] + [r for r in CANDIDATE_RANGES if r != given]:
        batch = np.stack([conform_image(image, input_shape, candidate) for image in images])
        probabilities = as_probabilities(predict_fn(batch), len(batch))
        trials.append((candidate, probabilities, *_figures(probabilities, labels)))
    _, probabilities, accuracy, spread = trials[0]

    labelled = [label for label in labels if label is not None]
    present = Counter(labelled)
    chance = max(present.values()) / len(labelled) if labelled else None
    findings = []
    if len(images) >= MIN_IMAGES and spread < CONSTANT_SPREAD and (len(present) >= 2 or not labelled):
        findings.append(
            f"the model gives nearly the same probabilities to every image (none varies by more than {spread:.3f})"
        )
    if len(labelled) >= MIN_LABELLED and len(present) >= 2 and accuracy <= chance:
        findings.append(
            f"accuracy {accuracy:.0%} is no better than always guessing the most common class ({chance:.0%})"
        )
    if findings:  # another range that lifts accuracy clearly above chance, or makes the images differ, is the cause
        better = [
            trial for trial in trials[1:]
            if (accuracy is not None and trial[2] is not None and trial[2] >= max(accuracy, chance) + FIXED_BY)
            or (accuracy is None and trial[3] >= 5 * CONSTANT_SPREAD)
        ]
    else:  # nothing looks broken, yet another range scores far higher
        better = [
            trial for trial in trials[1:]
            if accuracy is not None and trial[2] is not None and trial[2] >= accuracy + BETTER_BY
        ]
    best = max(better, key=lambda trial: (trial[2] or 0.0, trial[3])) if better else None
    if best is not None and not findings:
        findings.append(f"accuracy {accuracy:.0%} is far below the {best[2]:.0%} of pixels in {format_range(best[0])}")

    warning = None
    if findings:
        head = f"input check on {len(images)} images fed {format_range(given)}: " + "; ".join(findings) + ". "
        if best is not None:
            scored = f"score {best[2]:.0%}" if best[2] is not None else f"vary by up to {best[3]:.2f}"
            low, high = (f"{value:g}" for value in best[0])
            warning = head + (
                f"Likely cause: the pixels are on the wrong scale; fed {format_range(best[0])}, the same images {scored}. "
                f"Fix: --value-range {low},{high} (or once, beside the model: "
                f"python -m models describe {model_path} --value-range {low},{high})."
            )
        elif labelled and len(present) >= 2 and _best_class_order(probabilities, labels) >= accuracy + BETTER_BY:
            warning = head + (
                "Likely cause: the classes are in another order than the model's; folder names are matched to the "
                "model's class names, or taken in sorted order when it has none. Fix: python -m models describe "
                f"{model_path} --class-names in the model's own order."
            )
        else:
            warning = head + (
                "Likely cause: the model is fed differently than it was trained (check --preprocess for keras.applications "
                "models, --value-range, and the class order: python -m models describe), or it never learned to tell "
                "these images apart."
            )
    return {
        "images": len(images),
        "labelled": len(labelled),
        "value_range": list(given),
        "accuracy": accuracy,
        "chance": chance,
        "spread": spread,
        "predicted": dict(Counter(class_names[int(p)] for p in probabilities.argmax(axis=1))),
        "alternatives": [
            {"value_range": list(candidate), "accuracy": trial_accuracy, "spread": trial_spread}
            for candidate, _, trial_accuracy, trial_spread in trials[1:]
        ],
        "warning": warning,
    }

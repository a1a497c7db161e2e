"""The input check of a run: the model's plain predictions on a sample of the run's images, before any LIME,
so that a wrong input contract (pixels on the wrong scale, missing preprocessing, classes in another order) or an
untrained model is told within seconds instead of after a run of confident garbage.

Pure: pixels, labels, a predict function and the run's contract in; figures and a warning out.

Whether the model tells the images apart is judged by two figures that hold for any number of classes and for a
sample of one class. How much the images move its log-probabilities, relative to how much the classes differ: a
trained model sure of one class still moves its unlikely classes by factors, where a blind model's outputs stay put
(or sit on one large bias that the images barely move). And how far its top probability stands above a uniform
guess.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
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
# Probabilities below this count as this: LIME fits probabilities, so smaller changes are invisible to it, and a
# saturated output (exactly 0) has no logarithm.
PROBABILITY_FLOOR = 1e-6
# Log-probabilities closer than this (1%) are the same: so that the float rounding of a uniform output is not taken
# for a difference between classes.
LOG_NOISE = 0.01
# Both thresholds sit between what blind and trained models gave on samples of one class and of several, measured on
# untrained 1000-class MobileNetV2s on photographs and on trained models of 2 to 1000 classes fed the right and the
# wrong scale. The dependence of models blind to the images (untrained, with default or random batch-norm statistics;
# or fed the wrong scale) was at most 0.052, a trained model's at least 0.36. Untrained ones whose batch-norm
# statistics came from photographs do depend on the images, but their top probability stood at most 0.041 of the way
# from uniform to certain, a trained model's at least 0.09. (Statistics taken from random noise gave 0.03 to 0.15:
# not always told.)
SAME_DEPENDENCE = 0.15
NEAR_UNIFORM = 0.05
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


@dataclass
class Trial:
    """The sample's predictions fed one value range, and their figures."""

    value_range: tuple[float, float]
    probabilities: np.ndarray
    accuracy: float | None  # over the labelled images
    spread: float  # the largest range of a class probability across the images
    # how much the images move the log-probabilities (the largest standard deviation across images of a class's)
    # over how much the classes differ (the mean standard deviation across classes within an image)
    dependence: float
    confidence: float  # the mean top probability

    @classmethod
    def of(cls, value_range: tuple[float, float], probabilities: np.ndarray, labels: list[int | None]) -> Trial:
        predicted = probabilities.argmax(axis=1)
        known = [(p, label) for p, label in zip(predicted, labels) if label is not None]
        accuracy = sum(int(p == label) for p, label in known) / len(known) if known else None
        logs = np.log(np.maximum(probabilities, PROBABILITY_FLOOR))
        across_images = logs.std(axis=0).max()  # of the class the images move most
        across_classes = logs.std(axis=1).mean()
        return cls(
            value_range, probabilities, accuracy,
            spread=float((probabilities.max(axis=0) - probabilities.min(axis=0)).max()),
            dependence=float(across_images / (across_classes + LOG_NOISE)),
            confidence=float(probabilities.max(axis=1).mean()),
        )

    @property
    def uniform(self) -> float:
        return 1.0 / self.probabilities.shape[1]

    def same_for_every_image(self) -> bool:
        return len(self.probabilities) >= MIN_IMAGES and self.dependence < SAME_DEPENDENCE

    def near_uniform(self) -> bool:
        return (self.confidence - self.uniform) / (1.0 - self.uniform) < NEAR_UNIFORM

    def blind(self) -> bool:
        return self.same_for_every_image() or self.near_uniform()

    def as_dict(self) -> dict:
        return {"value_range": list(self.value_range), "accuracy": self.accuracy, "spread": self.spread,
                "dependence": self.dependence, "confidence": self.confidence}


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
    and, when the predictions look like a wrong input or an untrained model (the same for every image, nearly
    uniform, or at or below chance), a warning that names the likely cause and the option that fixes it."""
    labels = list(labels)
    given = (float(value_range[0]), float(value_range[1]))
    trials = []
    for candidate in [given] + [r for r in CANDIDATE_RANGES if r != given]:
        batch = np.stack([conform_image(image, input_shape, candidate) for image in images])
        trials.append(Trial.of(candidate, as_probabilities(predict_fn(batch), len(batch)), labels))
    run, alternatives = trials[0], trials[1:]
    accuracy = run.accuracy

    labelled = [label for label in labels if label is not None]
    present = Counter(labelled)
    chance = max(present.values()) / len(labelled) if labelled else None
    # accuracy against chance says something only when the sample holds two classes or more
    scored = len(labelled) >= MIN_LABELLED and len(present) >= 2
    findings = []
    if run.same_for_every_image():
        findings.append(
            "the model gives nearly the same probabilities to every image (a class's log-probability moves from "
            f"image to image by at most {run.dependence:.0%} of how much the classes differ)"
        )
    if run.near_uniform():
        findings.append(
            f"its probabilities are nearly uniform (the top class gets {run.confidence:.1%} on average, where a "
            f"uniform guess over {run.probabilities.shape[1]} classes gives {run.uniform:.1%})"
        )
    if scored and accuracy <= chance:
        findings.append(
            f"accuracy {accuracy:.0%} is no better than always guessing the most common class ({chance:.0%})"
        )
    if findings and scored:  # another range that lifts accuracy clearly above chance is the cause
        fixes = [trial for trial in alternatives if trial.accuracy >= max(accuracy, chance) + FIXED_BY]
    elif findings:  # without two classes to score: another range at which the model tells the images apart
        fixes = [trial for trial in alternatives if not trial.blind()]
    else:  # nothing looks broken, yet at another range the model still tells the images apart and scores far higher
        fixes = [
            trial for trial in alternatives
            if accuracy is not None and trial.accuracy >= accuracy + BETTER_BY and not trial.blind()
        ]
    fixes.sort(key=lambda trial: trial.accuracy or 0.0, reverse=True)
    if scored or not findings:
        fixes = fixes[:1]
    if fixes and not findings:
        findings.append(
            f"accuracy {accuracy:.0%} is far below the {fixes[0].accuracy:.0%} of pixels in {format_range(fixes[0].value_range)}"
        )

    warning = None
    if findings:
        head = f"input check on {len(images)} images fed {format_range(given)}: " + "; ".join(findings) + ". "
        if fixes:
            ranges = " or ".join(format_range(trial.value_range) for trial in fixes)
            options = " or ".join("--value-range " + ",".join(f"{v:g}" for v in trial.value_range) for trial in fixes)
            outcome = f"score {fixes[0].accuracy:.0%}" if scored else "are told apart"
            if len(fixes) == 1:
                fix = f"{options} (or once, beside the model: python -m models describe {model_path} {options})"
            else:  # without two classes in the sample, nothing says which
                fix = (f"{options} (the sample holds fewer than two classes, so the check cannot tell which; or once, "
                       f"beside the model: python -m models describe {model_path} --value-range LOW,HIGH)")
            warning = head + (
                f"Likely cause: the pixels are on the wrong scale; fed {ranges}, the same images {outcome}. Fix: {fix}."
            )
        elif all(trial.blind() for trial in trials):
            warning = head + (
                "Likely cause: the model never learned to tell these images apart (an untrained network, such as "
                "keras.applications with weights=None, does this at every value range, as here), or it is fed "
                "differently than it was trained. Fix: load the trained weights; if it is trained, check --preprocess "
                "(keras.applications models want their family's) and its contract: "
                f"python -m models describe {model_path}."
            )
        elif scored and not run.blind() and _best_class_order(run.probabilities, labels) >= accuracy + BETTER_BY:
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
        "spread": run.spread,
        "dependence": run.dependence,
        "confidence": run.confidence,
        "uniform": run.uniform,
        "predicted": dict(Counter(class_names[int(p)] for p in run.probabilities.argmax(axis=1))),
        "alternatives": [trial.as_dict() for trial in alternatives],
        "warning": warning,
    }

"""`python -m producer check-explainer`: the by-construction check (worker.engine.construct) on a user's own model
and images with evidence, in this process: no broker, no database.

For each image with evidence, the model is wrapped twice (sees only the evidence; sees only the background) and
each wrapping is explained with the run's settings. Where the explainer is trustworthy on this data, leakage and
evidence share are near 0 and pointing near 1: what the explanations of the real model show is then the model's.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from producer.service import EnqueueError, PreparedRun

# Where the engine's default is held to (benchmarks.quality's by-construction targets are these).
POINTING_TARGET = 0.98
LEAKAGE_TARGET = 0.02
EVIDENCE_SHARE_TARGET = 0.02


@dataclass(frozen=True)
class ImageCheck:
    name: str
    evidence_share_of_image: float
    pointing: float | None
    leakage: float | None
    evidence_share: float | None
    superpixels: int


@dataclass(frozen=True)
class Verdict:
    images: int
    pointing: float | None  # means over the images where the wrapped model responds
    leakage: float | None
    worst_leakage: float | None
    evidence_share: float | None
    unresponsive_evidence: int  # images whose evidence-only model barely responds to its evidence
    unresponsive_background: int

    def problems(self) -> list[str]:
        """Each figure that misses the benchmarks' target, in one line."""
        lines = []
        if self.pointing is not None and self.pointing < POINTING_TARGET:
            lines.append(f"pointing {self.pointing:.2f} < {POINTING_TARGET}: the top superpixel often lies mostly off "
                         "the evidence (superpixels straddle its outline: try --segmentation felzenszwalb)")
        if self.leakage is not None and self.leakage > LEAKAGE_TARGET:
            lines.append(f"leakage {self.leakage:.3f} > {LEAKAGE_TARGET}: positive weight where the model cannot look "
                         "(sampling noise: more --num-samples, or --estimator shrunk)")
        if self.evidence_share is not None and self.evidence_share > EVIDENCE_SHARE_TARGET:
            lines.append(f"evidence share {self.evidence_share:.3f} > {EVIDENCE_SHARE_TARGET}: the background-only model "
                         "gets weight on evidence it cannot see")
        return lines


def check_run(prepared: PreparedRun, progress=None) -> list[ImageCheck]:
    """The by-construction figures of every image of the prepared source that has evidence."""
    from core import images
    from models.classifier import load_classifier
    from worker.engine.construct import check_by_construction

    if prepared.evidence is None:
        raise EnqueueError("the check needs each image's evidence: give --evidence DIR or --boxes FILE.csv with "
                           "--folder (the built-in data sets bring their own)")
    contract = prepared.model.contract
    classifier = load_classifier(prepared.model.path, preprocess=contract.preprocess,
                                 logits=contract.outputs == "logits")
    height, width = classifier.input_shape[:2]
    source, checks = prepared.source, []
    total = len(source.entries)
    for done, read in enumerate(source.read(source.entries), start=1):
        mask = prepared.evidence.mask(read.entry, read.pixels.shape[:2], (height, width))
        pixels = read.pixels if read.pixels.shape[:2] == (height, width) else images.resize(read.pixels, height, width)
        if mask is not None and mask.any() and not mask.all():
            result = check_by_construction(pixels, classifier.predict, mask, prepared.params,
                                           input_shape=classifier.input_shape, value_range=contract.value_range)
            checks.append(ImageCheck(source.name(read.entry), float(mask.mean()), result.pointing, result.leakage,
                                     result.evidence_share, result.superpixels))
        if progress is not None:
            progress(done, total)
    if not checks:
        raise EnqueueError(f"no image of {source.description} has evidence that covers part of it")
    return checks


def verdict(checks: list[ImageCheck]) -> Verdict:
    def mean(values):
        return statistics.mean(values) if values else None

    pointing = [c.pointing for c in checks if c.pointing is not None]
    leakage = [c.leakage for c in checks if c.leakage is not None]
    shares = [c.evidence_share for c in checks if c.evidence_share is not None]
    return Verdict(len(checks), mean(pointing), mean(leakage), max(leakage) if leakage else None, mean(shares),
                   len(checks) - len(pointing), len(checks) - len(shares))

"""Explanations checked where the truth is known by construction, not guessed from a trained model's habits.

A trained model may use anything in an image, so a score against "where the object is" mixes the explainer's error
with the model's own habits. Here the model is wrapped so that what the explainer does can reach it only through
part of the image (m: the evidence pixels, x0: the image, fill: the explainer's fill):

- evidence only: f'(x) = f(m * x + (1 - m) * x0). The model sees the rest of the image as it is, but no
  perturbation there reaches it: every superpixel with no evidence pixel changes nothing, so the ideal explanation
  puts no positive weight on it (**leakage**: the share of the positive weight that does), and its top superpixel
  lies mostly on the evidence (**pointing**). The rest is kept as it is rather than filled: on a flat fill a model
  trained on textured backgrounds may not respond to its evidence at all (the shapes demo's CNN responded on 38%
  of its images, against all of them with the rest kept);
- background only: f''(x) = f((1 - m) * x + m * fill). The evidence is gone, so the ideal explanation puts no
  positive weight on it (**evidence share**: the share of positive weight x area that lies on evidence pixels).

Each wrapped model's own predicted label is explained. What is left to measure is the explainer's error alone: its
sampling noise, and superpixels that straddle the evidence's outline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audit.maps import evidence_figures
from worker.engine.explainer import explain
from worker.engine.fills import hidden_image
from worker.engine.inputs import conform_image
from worker.engine.params import ExplainParams
from worker.engine.prediction import PredictFn, as_probabilities

# A wrapped model whose explained probability rises less than this from the image with every superpixel hidden to
# the image itself has nothing for positive weights to find: they are noise, and the image is counted, not scored.
MIN_CHANGE = 0.05


@dataclass(frozen=True)
class ConstructCheck:
    """One image's by-construction figures (None where the wrapped model had nothing to explain)."""

    evidence_label: int  # the evidence-only model's prediction, the label explained for it
    pointing: float | None  # 1.0 when its top superpixel has at least half its pixels on the evidence
    leakage: float | None  # its share of positive weight on superpixels with no evidence pixel
    background_label: int
    evidence_share: float | None  # the background-only model's share of positive weight x area on the evidence
    superpixels: int
    model_calls: int  # per explanation (each check makes two)


def seen_only(predict_fn: PredictFn, visible: np.ndarray, unseen: np.ndarray) -> PredictFn:
    """`predict_fn` on images whose pixels outside `visible` (H, W bool) always show `unseen`: the wrapped model
    cannot depend on them, whatever the explainer does to them."""
    keep = visible[..., None]

    def predict(batch: np.ndarray) -> np.ndarray:
        return predict_fn(np.where(keep, batch, unseen).astype(batch.dtype, copy=False))

    return predict


def evidence_fill(image: np.ndarray, params: ExplainParams, value_range: tuple[float, float]) -> np.ndarray:
    """What the background-only model sees on the evidence: the explainer's own fill ("mean": the image's mean
    colour, as if the whole image were one superpixel), so that the evidence looks hidden."""
    whole = np.zeros(image.shape[:2], dtype=np.int32)
    return hidden_image(image, whole, params.hide, value_range)


def leakage(segments: np.ndarray, weights: np.ndarray, evidence: np.ndarray) -> float:
    """Share of the positive weight on superpixels that hold no evidence pixel (0 when no weight is positive)."""
    positive = np.clip(weights, 0, None)
    touches = np.bincount(segments[evidence], minlength=len(weights))[: len(weights)] > 0
    total = positive.sum()
    return float(positive[~touches].sum() / total) if total > 0 else 0.0


def check_by_construction(
    image: np.ndarray,
    predict_fn: PredictFn,
    evidence: np.ndarray,
    params: ExplainParams = ExplainParams(),
    *,
    input_shape=None,
    value_range: tuple[float, float] = (0.0, 1.0),
) -> ConstructCheck:
    """Explain the evidence-only and the background-only wrappings of the model on one image (see the module)."""
    image = conform_image(image, input_shape, value_range)
    evidence = np.asarray(evidence, dtype=bool)
    if evidence.shape != image.shape[:2]:
        raise ValueError(f"evidence is {evidence.shape}, the image {image.shape[:2]}")
    if not evidence.any() or evidence.all():
        raise ValueError("the evidence must cover some of the image and leave some of it")
    fill = evidence_fill(image, params, value_range)
    figures = {}
    for name, visible, unseen in (("evidence", evidence, image), ("background", ~evidence, fill)):
        wrapped = seen_only(predict_fn, visible, unseen)
        result = explain(image, wrapped, params, value_range=value_range)
        label = result.predicted_label
        everything_hidden = hidden_image(image, result.segments, params.hide, value_range)
        hidden_all = as_probabilities(wrapped(everything_hidden[None]), 1)[0, label]
        moves = float(result.probabilities[label]) - float(hidden_all) >= MIN_CHANGE
        weights = result.labels[label].weights
        figures[name] = (label, result, weights if moves else None)
    (evidence_label, result, weights), (background_label, _, background_weights) = figures["evidence"], figures["background"]
    segments = result.segments
    # the audit's own pointing and evidence share (audit.maps), so that the check and a run's figures agree
    return ConstructCheck(
        evidence_label=evidence_label,
        pointing=None if weights is None else float(evidence_figures(segments, weights, evidence)[0]),
        leakage=None if weights is None else leakage(segments, weights, evidence),
        background_label=background_label,
        evidence_share=None if background_weights is None else evidence_figures(segments, background_weights, evidence)[1],
        superpixels=result.n_segments,
        model_calls=result.sampling.model_calls,
    )

"""The adjusted estimator estimates lime's own quantity, with less noise where the model's probability is a curve of
the evidence; it stays finite on flat and saturated outputs. Masks and 'models' are formulas: no images needed."""

from __future__ import annotations

import numpy as np

from worker.engine.adjusted import AdjustedEstimator
from worker.engine.designs import draw
from worker.engine.surrogate import LimeEstimator

N_FEATURES = 40
EVIDENCE = np.zeros(N_FEATURES)
EVIDENCE[:8] = np.linspace(1.6, 0.5, 8)  # eight superpixels carry graded evidence, the rest none


def classifier_like(masks: np.ndarray) -> np.ndarray:
    """A probability that collapses once enough evidence is hidden, plus one interaction a logistic curve misses."""
    logit = -4.0 + masks @ EVIDENCE + 1.5 * masks[:, 8] * masks[:, 9]
    return 1 / (1 + np.exp(-logit))


def reference() -> np.ndarray:
    masks = draw("independent", np.random.RandomState(1000), N_FEATURES, 20_000)
    return LimeEstimator(N_FEATURES, 0).estimate(masks, classifier_like(masks)).weights


def test_on_many_samples_it_is_limes_fit():
    masks = draw("independent", np.random.RandomState(1), N_FEATURES, 20_000)
    adjusted = AdjustedEstimator(N_FEATURES, 1).estimate(masks, classifier_like(masks)).weights
    lime = LimeEstimator(N_FEATURES, 1).estimate(masks, classifier_like(masks)).weights
    assert np.abs(adjusted - lime).max() < 0.02 * np.abs(lime).max()


def test_it_is_closer_to_the_reference_with_half_the_samples():
    truth = reference()
    errors = {"adjusted, hadamard 513": [], "lime, independent 1000": []}
    for seed in range(5):
        masks = draw("hadamard", np.random.RandomState(seed), N_FEATURES, 512)
        errors["adjusted, hadamard 513"].append(
            AdjustedEstimator(N_FEATURES, seed).estimate(masks, classifier_like(masks)).weights - truth)
        masks = draw("independent", np.random.RandomState(seed), N_FEATURES, 1000)
        errors["lime, independent 1000"].append(LimeEstimator(N_FEATURES, seed).estimate(masks, classifier_like(masks)).weights - truth)
    rms = {name: float(np.sqrt(np.mean(np.square(e)))) for name, e in errors.items()}
    assert rms["adjusted, hadamard 513"] < 0.5 * rms["lime, independent 1000"], rms


def test_flat_and_saturated_outputs_give_finite_explanations():
    masks = draw("hadamard", np.random.RandomState(0), N_FEATURES, 256)
    estimator = AdjustedEstimator(N_FEATURES, 0)
    flat = estimator.explain_label(masks, np.full(len(masks), 0.3), 0)
    assert np.allclose(flat.weights, 0, atol=1e-9) and abs(flat.intercept - 0.3) < 1e-6
    saturated = (masks[:, 0] == 1).astype(float)  # 0 or 1 exactly: superpixel 0 decides
    weights = estimator.explain_label(masks, saturated, 0).weights
    assert np.isfinite(weights).all() and int(np.argmax(weights)) == 0

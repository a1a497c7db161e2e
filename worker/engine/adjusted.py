"""The adjusted estimator: lime's quantity, estimated with a control variate.

Most of what a classifier's probability does as superpixels are switched off is a logistic curve of them: the
probability stays put while a few are gone and collapses once enough of the evidence is. lime's linear fit leaves
that curve in its residuals, where it is noise that only more samples average away. Here a logistic model g is fitted
to the samples first (lime's kernel weights; a few Newton steps); lime's linear fit of g itself is then taken on
SIMULATED masks (no model calls: g is a formula), and lime's fit of what g misses (f - g) on the real samples is
added:

    weights = lime_fit(g, 20,000 simulated masks) + lime_fit(f - g, the samples).

Whatever g is, the sum estimates lime's own quantity (the second term corrects the first; a poor g only leaves more
noise in it); when g follows f, the noise left is the small f - g. On the demo models it halves or better the
model calls for the same agreement with a 20,000-sample lime reference (`python -m benchmarks.quality`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from worker.engine.surrogate import Estimate, LabelExplanation, kernel_weights, weighted_r2, weighted_ridge

SIMULATED_MASKS = 20_000
# Simulations a worker process keeps: one per superpixel count among a run's images (SLIC 50 gives a dozen or so);
# about 8 MB each at 45 superpixels (the projection, in float64).
SIMULATIONS_KEPT = 16
NEWTON_STEPS = 30
# Keeps the Newton steps finite when the probabilities sit at 0 or 1; small enough to leave the fit unbiased.
L2 = 1e-6
PROBABILITY_FLOOR = 1e-6


@dataclass(frozen=True)
class Simulation:
    """The simulated masks and lime's fit on them as one matrix product, precomputed (read-only arrays)."""

    masks: np.ndarray  # (SIMULATED_MASKS, n_features) int8, the first the image itself
    weights: np.ndarray  # lime's kernel weights of the masks, normalised to sum 1
    mean_mask: np.ndarray  # their weighted mean
    projection: np.ndarray  # (n_features, SIMULATED_MASKS): lime's fit of any function of the masks, centred


@lru_cache(maxsize=SIMULATIONS_KEPT)
def simulation(n_features: int, seed: int) -> Simulation:
    """Depends on the seed and the superpixel count only, so every image of a run with that count shares it."""
    masks = np.random.default_rng([seed, n_features, 1]).integers(0, 2, (SIMULATED_MASKS, n_features), dtype=np.int8)
    masks[0] = 1  # lime's first sample is the image itself
    simulated = masks.astype(np.float64)
    weights = kernel_weights(simulated)
    normalised = weights / weights.sum()
    mean_mask = normalised @ simulated
    centred = simulated - mean_mask
    weighted = centred.T * weights
    projection = np.linalg.solve(weighted @ centred + np.eye(n_features), weighted)
    for array in (masks, normalised, mean_mask, projection):
        array.setflags(write=False)
    return Simulation(masks, normalised, mean_mask, projection)


class AdjustedEstimator:
    """lime's surrogate with a logistic control variate (see the module's text). The simulated masks, drawn from
    the seed, serve every label and every round, and every image with as many superpixels."""

    def __init__(self, n_features: int, seed: int):
        self.simulation = simulation(n_features, seed)

    def estimate(self, data: np.ndarray, target: np.ndarray) -> Estimate:
        data = np.asarray(data, dtype=np.float64)
        return self.estimate_weighted(data, target, kernel_weights(data))

    def estimate_weighted(self, data: np.ndarray, target: np.ndarray, weights: np.ndarray) -> Estimate:
        """`estimate` for float64 masks whose kernel weights the caller already has."""
        simulated = self.simulation
        logistic = logistic_fit(data, target, weights)
        curve = sigmoid(logistic[0] + simulated.masks.astype(np.float64) @ logistic[1:])
        curve_mean = simulated.weights @ curve
        curve_weights = simulated.projection @ (curve - curve_mean)
        correction = weighted_ridge(data, target - sigmoid(logistic[0] + data @ logistic[1:]), weights)
        coefficients = curve_weights + correction.weights
        intercept = float(curve_mean - simulated.mean_mask @ curve_weights) + correction.intercept
        return Estimate(coefficients, intercept, correction.covariance)

    def explain_label(self, data: np.ndarray, target: np.ndarray, label: int) -> LabelExplanation:
        data = np.asarray(data, dtype=np.float64)
        weights = kernel_weights(data)
        estimate = self.final(self.estimate_weighted(data, target, weights), data, weights)
        score = weighted_r2(data, target, weights, estimate)
        local = estimate.intercept + data[0] @ estimate.weights
        return LabelExplanation(label, estimate.weights, estimate.intercept, score, float(local))

    def final(self, estimate: Estimate, data: np.ndarray, weights: np.ndarray) -> Estimate:
        """The estimate an explanation reports (a subclass may refine it; sampling's stopping rule sees `estimate`)."""
        return estimate


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip(x, -500, 500)))


def logistic_fit(data: np.ndarray, target: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Intercept and slopes of the weighted logistic regression of probabilities (cross-entropy with soft targets)
    on the masks, by Newton's method; a step that does not lower the loss is halved."""
    x = np.hstack([np.ones((len(data), 1)), data])
    y = np.clip(target, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    penalty = np.full(x.shape[1], L2)

    def loss(beta):
        z = x @ beta
        return weights @ (np.logaddexp(0, z) - y * z) + 0.5 * penalty @ beta**2

    beta = np.zeros(x.shape[1])
    beta[0] = np.log(weights @ y / weights.sum() / (1 - weights @ y / weights.sum()))
    current = loss(beta)
    for _ in range(NEWTON_STEPS):
        p = sigmoid(x @ beta)
        gradient = x.T @ (weights * (p - y)) + penalty * beta
        hessian = (x.T * (weights * p * (1 - p))) @ x + np.diag(penalty)
        step = np.linalg.lstsq(hessian, gradient, rcond=None)[0]
        for _ in range(20):
            candidate = beta - step
            value = loss(candidate)
            if value <= current:
                break
            step = step / 2
        else:
            break
        converged = np.abs(candidate - beta).max() < 1e-8
        beta, current = candidate, value
        if converged:
            break
    return beta

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

import numpy as np

from worker.engine.surrogate import Estimate, LabelExplanation, kernel_weights, weighted_r2, weighted_ridge

SIMULATED_MASKS = 20_000
NEWTON_STEPS = 30
# Keeps the Newton steps finite when the probabilities sit at 0 or 1; small enough to leave the fit unbiased.
L2 = 1e-6
PROBABILITY_FLOOR = 1e-6


class AdjustedEstimator:
    """lime's surrogate with a logistic control variate (see the module's text). One per explanation: the simulated
    masks, drawn from the seed, serve every label and every round."""

    def __init__(self, n_features: int, seed: int):
        simulated = np.random.default_rng([seed, n_features, 1]).integers(0, 2, (SIMULATED_MASKS, n_features), dtype=np.int8)
        simulated[0] = 1  # lime's first sample is the image itself
        self.simulated = simulated.astype(np.float64)
        weights = kernel_weights(self.simulated)
        # lime's fit of any function on the simulated masks is one matrix product: precompute it once
        self.simulated_weights = weights / weights.sum()
        centred = self.simulated - self.simulated_weights @ self.simulated
        weighted = centred.T * weights
        self.projection = np.linalg.solve(weighted @ centred + np.eye(n_features), weighted)
        self.mean_mask = self.simulated_weights @ self.simulated

    def estimate(self, data: np.ndarray, target: np.ndarray) -> Estimate:
        data = np.asarray(data, dtype=np.float64)
        weights = kernel_weights(data)
        logistic = logistic_fit(data, target, weights)
        curve = sigmoid(logistic[0] + self.simulated @ logistic[1:])
        curve_mean = self.simulated_weights @ curve
        curve_weights = self.projection @ (curve - curve_mean)
        correction = weighted_ridge(data, target - sigmoid(logistic[0] + data @ logistic[1:]), weights)
        coefficients = curve_weights + correction.weights
        intercept = float(curve_mean - self.mean_mask @ curve_weights) + correction.intercept
        return Estimate(coefficients, intercept, correction.covariance)

    def explain_label(self, data: np.ndarray, target: np.ndarray, label: int) -> LabelExplanation:
        estimate = self.estimate(data, target)
        data = np.asarray(data, dtype=np.float64)
        score = weighted_r2(data, target, kernel_weights(data), estimate)
        local = estimate.intercept + data[0] @ estimate.weights
        return LabelExplanation(label, estimate.weights, estimate.intercept, score, float(local))


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

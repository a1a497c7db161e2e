"""lime's linear surrogate: a weighted ridge fit (alpha 1, with intercept) of one label's probability on the 0/1
masks, each sample weighted by lime's kernel on its cosine distance to the unperturbed image.

`LimeEstimator` is lime's own: the closed form while sampling (equal to lime's fit to 1e-12, with the weights'
covariance for the stopping rule) and lime's `LimeBase` for the explanation it returns, so that the article's
settings equal lime's explain_instance exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KERNEL_WIDTH = 0.25  # lime_image.LimeImageExplainer's default
RIDGE_ALPHA = 1.0  # lime_base's Ridge(alpha=1)


@dataclass
class LabelExplanation:
    """The linear surrogate for one label: weight per segment, intercept, weighted R^2, local prediction."""

    label: int
    weights: np.ndarray  # (n_segments,) indexed by segment id
    intercept: float
    score: float
    local_prediction: float


@dataclass
class Estimate:
    """A surrogate's weights and intercept, and the weights' covariance (for the stopping rule)."""

    weights: np.ndarray
    intercept: float
    covariance: np.ndarray


def kernel_weights(data: np.ndarray) -> np.ndarray:
    """lime's kernel, sqrt(exp(-d^2 / width^2)), on the cosine distance of each mask to the all-ones mask."""
    n = data.shape[1]
    distances = 1 - data.sum(axis=1) / np.maximum(np.sqrt(data.sum(axis=1) * n), 1e-12)
    return np.sqrt(np.exp(-(distances**2) / KERNEL_WIDTH**2))


def weighted_ridge(data: np.ndarray, target: np.ndarray, weights: np.ndarray) -> Estimate:
    """The weighted ridge fit in closed form: weights, intercept, and the weights' covariance (sandwich form with
    the residual variance)."""
    total = weights.sum()
    mean_x, mean_y = weights @ data / total, weights @ target / total
    centred = data - mean_x
    y = target - mean_y
    weighted = centred.T * weights
    gram = weighted @ centred
    inverse = np.linalg.inv(gram + RIDGE_ALPHA * np.eye(len(gram)))
    coefficients = inverse @ (weighted @ y)
    residuals = y - centred @ coefficients
    variance = (weights * residuals**2).sum() / max(total - len(coefficients) - 1, 1.0)
    return Estimate(coefficients, float(mean_y - mean_x @ coefficients), variance * inverse @ gram @ inverse)


def weighted_r2(data: np.ndarray, target: np.ndarray, weights: np.ndarray, estimate: Estimate) -> float:
    """The surrogate's weighted R^2 on the samples (what lime reports as the explanation's score)."""
    fitted = estimate.intercept + data @ estimate.weights
    mean = weights @ target / weights.sum()
    total = weights @ (target - mean) ** 2
    return float(1 - weights @ (target - fitted) ** 2 / total) if total > 0 else 1.0


class LimeEstimator:
    """lime's estimator: the kernel-weighted ridge fit of the samples."""

    def __init__(self, n_features: int, seed: int):
        self.seed = seed

    def estimate(self, data: np.ndarray, target: np.ndarray) -> Estimate:
        return weighted_ridge(data, target, kernel_weights(data))

    def explain_label(self, data: np.ndarray, target: np.ndarray, label: int) -> LabelExplanation:
        """lime's own weighted ridge fit (LimeBase) of one label, as explain_instance makes it."""
        from lime.lime_base import LimeBase
        from sklearn.metrics import pairwise_distances

        distances = pairwise_distances(data, data[0].reshape(1, -1), metric="cosine").ravel()
        base = LimeBase(lambda d: np.sqrt(np.exp(-(d**2) / KERNEL_WIDTH**2)), random_state=np.random.RandomState(self.seed))
        intercept, pairs, score, local_pred = base.explain_instance_with_data(
            data, target[:, None], distances, 0, num_features=100000, feature_selection="auto"
        )
        weights = np.zeros(data.shape[1])
        for feature, weight in pairs:
            weights[feature] = weight
        return LabelExplanation(label, weights, float(intercept), float(score), float(np.ravel(local_pred)[0]))

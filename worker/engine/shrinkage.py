"""The shrunk estimator: the adjusted estimate, pulled towards zero where the samples cannot tell a weight from noise.

In most images most superpixels change nothing the model does. An estimate from a few hundred samples still gives
each of them a small weight of noise, and summed over dozens of superpixels that noise is a visible share of the
positive weight on places the model never looked (`worker.engine.construct`'s leakage). The prior here says so: each
superpixel's true weight is exactly zero with probability pi0, else drawn from N(0, tau^2). pi0 and tau are fitted
to the image's own estimates (their marginal likelihood, on a grid), and each weight becomes its posterior mean

    E[w | estimate] = P(not zero | estimate) * estimate * tau^2 / (tau^2 + s^2),

with s the estimate's standard error from the surrogate's covariance. Weights far above their noise keep their size
and order; weights within it go to nearly zero. An empirical-Bayes normal-means model (Johnstone & Silverman, 2004).
"""

from __future__ import annotations

import numpy as np

from worker.engine.adjusted import AdjustedEstimator
from worker.engine.surrogate import Estimate

ZERO_SHARES = np.linspace(0.0, 0.99, 100)  # pi0's grid
SLAB_SCALES = 60  # tau's grid: log-spaced from the smallest standard error to the largest estimate


def shrink(estimates: np.ndarray, errors: np.ndarray) -> np.ndarray:
    """Posterior means of the true weights under the spike-and-slab prior fitted to these estimates."""
    errors = np.maximum(errors, 1e-12)
    top = max(float(np.abs(estimates).max()), float(errors.min()) * 10)
    scales = np.geomspace(errors.min() / 10, top * 2, SLAB_SCALES)
    zero = _normal_density(estimates, errors**2)  # (features,)
    slab = _normal_density(estimates[None], errors[None] ** 2 + scales[:, None] ** 2)  # (scales, features)
    # log-likelihood of every (pi0, tau) pair: sum over features of log(pi0 * zero + (1 - pi0) * slab)
    mixture = ZERO_SHARES[:, None, None] * zero + (1 - ZERO_SHARES[:, None, None]) * slab[None]
    likelihood = np.log(np.maximum(mixture, 1e-300)).sum(axis=2)
    best_share, best_scale = np.unravel_index(np.argmax(likelihood), likelihood.shape)
    pi0, tau2 = ZERO_SHARES[best_share], scales[best_scale] ** 2
    not_zero = (1 - pi0) * slab[best_scale] / np.maximum(mixture[best_share, best_scale], 1e-300)
    return not_zero * estimates * tau2 / (tau2 + errors**2)


def _normal_density(x: np.ndarray, variance: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * x**2 / variance) / np.sqrt(2 * np.pi * variance)


class ShrunkEstimator(AdjustedEstimator):
    """The adjusted estimator's weights, shrunk (see the module's text). Sampling's stopping rule sees the same
    estimates as the adjusted estimator's: shrinking changes the weights, not how settled they are."""

    def final(self, estimate: Estimate, data: np.ndarray, weights: np.ndarray) -> Estimate:
        shrunk = shrink(estimate.weights, np.sqrt(np.clip(np.diag(estimate.covariance), 0, None)))
        # the intercept keeps the surrogate's prediction at the mean mask where shrinking moved the weights
        mean_mask = weights @ data / weights.sum()
        intercept = estimate.intercept + float(mean_mask @ (estimate.weights - shrunk))
        return Estimate(shrunk, intercept, estimate.covariance)

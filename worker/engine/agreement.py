"""How much two explanations agree: the top-k superpixels, their Jaccard overlap, and the overlap two reruns would
reach, predicted from one explanation's uncertainty."""

from __future__ import annotations

from typing import Sequence

import numpy as np

TOP_K = 5  # the superpixels whose agreement across seeds is the stability
AGREEMENT_DRAWS = 64


def top_k(weights: np.ndarray, k: int = TOP_K) -> set[int]:
    """The k superpixels with the largest weights; at most half of them when an image has fewer than 2k, so that
    a segmentation with a handful of superpixels cannot agree with itself by listing them all."""
    k = min(k, max(1, len(weights) // 2))
    return {int(s) for s in np.argsort(-weights, kind="stable")[:k]}


def overlap(first: set, second: set) -> float:
    """Jaccard overlap of two sets of superpixels."""
    return len(first & second) / len(first | second)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Top-k Jaccard overlap of two weight vectors of the same segmentation."""
    return overlap(top_k(a), top_k(b))


def top_k_jaccard(rankings: Sequence[np.ndarray]) -> float:
    """Mean top-k Jaccard overlap over every pair of weight vectors (same segmentation)."""
    pairs = [(a, b) for i, a in enumerate(rankings) for b in rankings[i + 1 :]]
    return float(np.mean([jaccard(a, b) for a, b in pairs]))


def expected_agreement(weights: np.ndarray, covariance: np.ndarray) -> float:
    """The top-k Jaccard that two reruns would reach if their weights scattered around these by the covariance:
    AGREEMENT_DRAWS simulated pairs, from a fixed random state (the same figures give the same answer)."""
    k = len(top_k(weights))
    if k >= len(weights):
        return 1.0
    factor = np.linalg.cholesky(covariance + 1e-15 * np.eye(len(weights)))
    draws = np.random.RandomState(0).standard_normal((2 * AGREEMENT_DRAWS, len(weights))) @ factor.T + weights
    tops = np.argsort(-draws, axis=1)[:, :k]
    return float(np.mean([overlap(set(a), set(b)) for a, b in zip(tops[0::2], tops[1::2])]))

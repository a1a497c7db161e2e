"""Superpixels: the features LIME switches on and off."""

from __future__ import annotations

import numpy as np

from worker.engine.params import ExplainParams


def segment(image: np.ndarray, params: ExplainParams) -> np.ndarray:
    """Superpixels with ids 0..n-1 (lime assumes contiguous ids; SLIC starts at 1 by default)."""
    from skimage.segmentation import quickshift, slic

    if params.segmentation == "quickshift":
        raw = quickshift(
            image, kernel_size=params.kernel_size, max_dist=params.max_dist, ratio=params.ratio,
            rng=params.seed,
        )
    else:
        raw = slic(
            image, n_segments=params.n_segments, compactness=params.compactness, sigma=params.sigma,
            start_label=0,
        )
    _, ids = np.unique(raw, return_inverse=True)
    return ids.reshape(raw.shape).astype(np.int32)

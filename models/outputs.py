"""A classifier's outputs as one column per class, whatever its last layer: NumPy only."""

from __future__ import annotations

import numpy as np


def class_columns(output: np.ndarray) -> np.ndarray:
    """(n, classes) float64; a single sigmoid output p (the article's binary CNN) becomes [1 - p, p], so both
    classes can be explained."""
    output = np.asarray(output, dtype=np.float64)
    return np.concatenate([1.0 - output, output], axis=-1) if output.shape[-1] == 1 else output

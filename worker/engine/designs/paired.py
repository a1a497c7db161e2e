"""Antithetic pairs: each coin-flip mask followed by its complement.

In an unweighted linear fit a pair cancels every even-order interaction (two superpixels together, four, ...) out
of the main effects exactly (the foldover principle; Covert & Lee, AISTATS 2021, for KernelSHAP). lime's kernel
weighs a mask and its complement differently (by how many superpixels each keeps), so the cancellation is partial;
`python -m benchmarks.quality` measures what is left.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

PAIRS_PER_BLOCK = 64


def block_rows(n_features: int) -> int:
    return 2 * PAIRS_PER_BLOCK


def blocks(random_state: np.random.RandomState, n_features: int) -> Iterator[np.ndarray]:
    while True:
        masks = random_state.randint(0, 2, (PAIRS_PER_BLOCK, n_features)).astype(np.int8)
        yield fold_over(masks)


def draw(random_state: np.random.RandomState, n_features: int, rows: int) -> np.ndarray:
    """At least `rows` masks in whole pairs."""
    return fold_over(random_state.randint(0, 2, ((rows + 1) // 2, n_features)).astype(np.int8))


def fold_over(masks: np.ndarray) -> np.ndarray:
    """Each mask followed by its complement, so any even prefix holds whole pairs."""
    pairs = np.empty((2 * len(masks), masks.shape[1]), dtype=np.int8)
    pairs[0::2], pairs[1::2] = masks, 1 - masks
    return pairs

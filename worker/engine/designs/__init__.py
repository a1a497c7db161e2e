"""How the perturbations are drawn: one module per design, each a stream of blocks of 0/1 masks (1 keeps a
superpixel) from a random state.

Every design keeps each mask, taken alone, uniform over the subsets of superpixels, as lime's coin flips are, so
an explanation estimates lime's own quantity whatever the design; designs differ in how the masks of one
explanation relate to each other. The unperturbed image (all ones) is not part of a design: the engine adds it
as the first sample, as lime does.

- independent: lime's coin flips, each mask on its own (worker.engine.designs.independent);
- paired: each coin-flip mask followed by its complement (antithetic pairs);
- hadamard: randomised Hadamard rows, each followed by its complement (a foldover).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from worker.engine.designs import hadamard, independent, paired

DESIGNS = {"independent": independent, "paired": paired, "hadamard": hadamard}


def blocks(design: str, random_state: np.random.RandomState, n_features: int) -> Iterator[np.ndarray]:
    """The design's masks as an endless stream of whole blocks (each keeps the design's defining property)."""
    return DESIGNS[design].blocks(random_state, n_features)


def block_rows(design: str, n_features: int) -> int:
    return DESIGNS[design].block_rows(n_features)


def draw(design: str, random_state: np.random.RandomState, n_features: int, num_samples: int) -> np.ndarray:
    """A fixed count of samples, the unperturbed image first: lime's own draw for `independent` (exactly
    `num_samples` rows, the first overwritten with ones); for the others the all-ones row, then at least
    `num_samples - 1` masks, rounded up to what keeps the design's property (whole pairs, whole blocks)."""
    if design == "independent":
        return independent.lime_draw(random_state, n_features, num_samples)
    masks = DESIGNS[design].draw(random_state, n_features, num_samples - 1)
    return np.concatenate([np.ones((1, n_features), dtype=np.int8), masks])

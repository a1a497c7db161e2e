"""lime's design: every superpixel of every mask an independent fair coin flip."""

from __future__ import annotations

from typing import Iterator

import numpy as np

BLOCK_ROWS = 128  # the rounds of `auto`: half a full batch of the demo CNN


def lime_draw(random_state: np.random.RandomState, n_features: int, num_samples: int) -> np.ndarray:
    """The same draw, in the same order, as lime_image.LimeImageExplainer.data_labels: the first row keeps all."""
    data = random_state.randint(0, 2, num_samples * n_features).reshape((num_samples, n_features))
    data[0, :] = 1
    return data


def block_rows(n_features: int) -> int:
    return BLOCK_ROWS


def blocks(random_state: np.random.RandomState, n_features: int) -> Iterator[np.ndarray]:
    while True:
        yield random_state.randint(0, 2, (BLOCK_ROWS, n_features)).astype(np.int8)

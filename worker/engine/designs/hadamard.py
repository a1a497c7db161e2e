"""Randomised Hadamard rows with their foldover: a balanced design instead of independent coin flips.

A block takes a Sylvester Hadamard matrix of order m (the smallest power of two above the number of superpixels),
picks one of its non-constant columns at random for each superpixel, flips each column's signs at random and
shuffles the rows; then every row is followed by its complement. Within a block every superpixel is kept in exactly
half the masks, every two superpixels are kept together in exactly a quarter (no two are confounded by chance, as
independent flips are in a few hundred rows), and the foldover takes every two-way interaction out of the main
effects of an unweighted fit. The random column signs make each mask, alone, uniform over the subsets of
superpixels: the explanation still estimates lime's own quantity. Blocks are independent of each other.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterator

import numpy as np

from worker.engine.designs.paired import fold_over


@lru_cache(maxsize=16)
def sylvester(order: int) -> np.ndarray:
    """The Sylvester Hadamard matrix of a power-of-two order, +1/-1 (scipy.linalg.hadamard's)."""
    from scipy.linalg import hadamard as scipy_hadamard

    return scipy_hadamard(order).astype(np.int8)


def order_for(n_features: int) -> int:
    """The smallest power of two with more than n_features rows: enough non-constant columns, one per superpixel."""
    return 1 << int(n_features).bit_length()


def block_rows(n_features: int) -> int:
    return 2 * order_for(n_features)


def draw(random_state: np.random.RandomState, n_features: int, rows: int) -> np.ndarray:
    """At least `rows` masks in whole blocks."""
    stream = blocks(random_state, n_features)
    return np.concatenate([next(stream) for _ in range(-(-rows // block_rows(n_features)))])


def blocks(random_state: np.random.RandomState, n_features: int) -> Iterator[np.ndarray]:
    order = order_for(n_features)
    matrix = sylvester(order)
    while True:
        columns = random_state.choice(np.arange(1, order), n_features, replace=False)
        signs = random_state.choice(np.array([-1, 1], dtype=np.int8), n_features)
        rows = random_state.permutation(order)
        block = (matrix[np.ix_(rows, columns)] * signs > 0).astype(np.int8)
        yield fold_over(block)

"""Each design's defining property, and that every mask alone stays uniform over the subsets (lime's quantity)."""

from __future__ import annotations

import numpy as np
import pytest

from worker.engine.designs import DESIGNS, block_rows, blocks, draw
from worker.engine.designs.hadamard import order_for
from worker.engine.params import DESIGNS as DESIGN_NAMES


def test_the_parameters_name_every_design_module():
    assert set(DESIGNS) == set(DESIGN_NAMES)


@pytest.mark.parametrize("n_features", [1, 7, 31, 32, 50, 63, 64, 100])
def test_a_hadamard_block_is_balanced_orthogonal_and_folded_over(n_features):
    block = next(blocks("hadamard", np.random.RandomState(3), n_features))
    order = order_for(n_features)
    assert order > n_features and block.shape == (2 * order, n_features) == (block_rows("hadamard", n_features), n_features)
    np.testing.assert_array_equal(block[1::2], 1 - block[0::2])  # every mask's complement follows it
    signs = 2 * block[0::2].astype(int) - 1
    # every superpixel kept in half the masks, every two orthogonal: no two are confounded
    np.testing.assert_array_equal(signs.T @ signs, order * np.eye(n_features, dtype=int))
    folded = 2 * block.astype(int) - 1  # the foldover: main effects orthogonal to every two-way interaction
    pairs = folded[:, :, None] * folded[:, None, :]
    assert np.all(np.einsum("ri,rjk->ijk", folded, pairs) == 0)


def test_paired_masks_come_with_their_complements():
    masks = draw("paired", np.random.RandomState(0), 20, 301)
    assert np.all(masks[0] == 1) and len(masks) == 301
    np.testing.assert_array_equal(masks[2::2], 1 - masks[1::2])


@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_each_mask_alone_is_uniform_over_the_subsets(design):
    # the same position in the design, over many seeds: each superpixel a fair coin, independent of the others
    n_features, seeds = 12, 3000
    rows = np.array([next(blocks(design, np.random.RandomState(seed), n_features))[5] for seed in range(seeds)])
    assert np.abs(rows.mean(axis=0) - 0.5).max() < 0.04
    centred = rows - rows.mean(axis=0)
    correlation = np.corrcoef(centred.T)
    assert np.abs(correlation[~np.eye(n_features, dtype=bool)]).max() < 0.08
    kept = rows.sum(axis=1)  # binomial(12, 1/2): variance 3
    assert kept.var() == pytest.approx(3.0, rel=0.12)


@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_a_seed_determines_the_design(design):
    a, b = (draw(design, np.random.RandomState(9), 40, 500) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, draw(design, np.random.RandomState(10), 40, 500))
    assert np.all(a[0] == 1)  # the image itself comes first, as in lime

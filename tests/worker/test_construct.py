"""The by-construction check (worker.engine.construct) and the shrunk estimator (worker.engine.shrinkage)."""

from __future__ import annotations

import numpy as np

from worker.engine import ExplainParams
from audit.maps import evidence_figures
from worker.engine.construct import check_by_construction, leakage, seen_only
from worker.engine.shrinkage import shrink


def brightness_model(batch: np.ndarray) -> np.ndarray:
    """Probability of class 1 rising with the whole image's mean brightness: it looks everywhere, until wrapped."""
    p = 1 / (1 + np.exp(-40 * (batch.mean(axis=(1, 2, 3)) - 0.33)))
    return np.stack([1 - p, p], axis=1)


def square_image(rng) -> tuple[np.ndarray, np.ndarray]:
    """Smooth noise with a bright square: the square is the evidence."""
    image = (0.3 + 0.05 * rng.standard_normal((64, 64, 3))).clip(0, 1).astype(np.float32)
    evidence = np.zeros((64, 64), dtype=bool)
    evidence[20:40, 12:36] = True
    image[evidence] = 0.95
    return image, evidence


def test_a_wrapped_model_cannot_see_outside_its_visible_pixels():
    rng = np.random.default_rng(0)
    image, evidence = square_image(rng)
    wrapped = seen_only(brightness_model, evidence, image)
    changed = image.copy()
    changed[~evidence] = rng.random((int((~evidence).sum()), 3))
    assert np.array_equal(wrapped(changed[None]), wrapped(image[None]))
    changed[evidence] = 0.0
    assert not np.allclose(wrapped(changed[None]), wrapped(image[None]))


def test_the_figures_on_a_hand_made_segmentation():
    segments = np.repeat(np.arange(4), 4).reshape(4, 4)  # rows 0..3 are superpixels 0..3
    evidence = np.zeros((4, 4), dtype=bool)
    evidence[0, :] = True  # superpixel 0 all evidence
    evidence[1, :1] = True  # superpixel 1 a quarter evidence
    weights = np.array([0.6, 0.2, 0.15, -0.3])
    assert evidence_figures(segments, weights, evidence)[0] == 1.0
    assert evidence_figures(segments, np.array([0.1, 0.6, 0.0, 0.0]), evidence)[0] == 0.0  # top superpixel only 1/4 evidence
    assert np.isclose(leakage(segments, weights, evidence), 0.15 / 0.95)  # superpixel 2 has no evidence pixel
    assert np.isclose(evidence_figures(segments, weights, evidence)[1], (0.6 * 4 + 0.2 * 1) / (0.95 * 4))
    assert leakage(segments, -np.abs(weights), evidence) == 0.0


def test_the_default_explainer_leaks_little_where_a_model_provably_cannot_look():
    rng = np.random.default_rng(1)
    checks = [check_by_construction(*_args(rng)) for _ in range(3)]
    for check in checks:
        assert check.pointing == 1.0
        assert check.leakage is not None and check.leakage < 0.05
        assert check.evidence_share is not None and check.evidence_share < 0.05
    # lime's own settings on the same images leak far more: the check can tell
    article = [check_by_construction(*_args(np.random.default_rng(1)), ExplainParams(
        segmentation="slic", num_samples=256, design="independent", estimator="lime"))]
    assert article[0].leakage > checks[0].leakage


def _args(rng):
    image, evidence = square_image(rng)
    return image, brightness_model, evidence


def test_shrinking_keeps_large_weights_and_pulls_noise_to_zero():
    rng = np.random.default_rng(2)
    true = np.zeros(50)
    true[:4] = [0.5, 0.3, 0.2, 0.1]
    errors = np.full(50, 0.01)
    estimates = true + errors * rng.standard_normal(50)
    shrunk = shrink(estimates, errors)
    assert np.allclose(shrunk[:4], estimates[:4], rtol=0.05)
    assert np.abs(shrunk[4:]).max() < 0.5 * np.abs(estimates[4:]).max()
    assert np.abs(shrunk[4:] - true[4:]).sum() < np.abs(estimates[4:] - true[4:]).sum() / 3
    assert list(np.argsort(-shrunk)[:4]) == [0, 1, 2, 3]

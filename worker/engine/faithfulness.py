"""Faithfulness: does the predicted probability fall when the top-weighted superpixels go, and rise when they come?"""

from __future__ import annotations

import numpy as np

from worker.engine.fills import hidden_image
from worker.engine.prediction import PredictFn, predict_rows

CURVE_STEPS = 10
# One reference for every setting, so that faithfulness figures compare across settings and runs (after RISE).
# Not grey and not a mild blur: the demo CNN calls a plain grey image `rectangle` (p = 0.80) and still finds the
# rectangle in a blur of sigma 16 (p = 0.66); black (0.13) and the image's mean colour (0.19) carry no evidence.
FAITHFULNESS_REFERENCE = (
    "deletion to black (the low end of the value range), insertion from the image's mean colour; x = share of pixels"
)


def faithfulness_curves(
    predict_fn: PredictFn, image: np.ndarray, segments: np.ndarray, weights: np.ndarray, label: int,
    value_range: tuple[float, float], batch_size: int, timings: dict[str, float],
) -> tuple[np.ndarray, float, np.ndarray, float]:
    """Deletion and insertion curves of `label`'s probability and their areas, with FAITHFULNESS_REFERENCE.

    Superpixels go highest weight first, in ~10 steps; x is the share of pixels deleted (to black) or inserted
    (into the image's mean colour), so that segmentations with few or many superpixels compare. A faithful
    ranking makes deletion drop fast (small area) and insertion rise fast (large area).
    """
    n = len(weights)
    order = np.argsort(-weights, kind="stable")
    steps = np.unique(np.linspace(0, n, min(CURVE_STEPS, n) + 1).round().astype(int))
    shown = np.ones((len(steps), n), dtype=np.int8)
    for i, k in enumerate(steps):
        shown[i, order[:k]] = 0
    areas = np.bincount(segments.ravel(), minlength=n)
    x = np.array([areas[order[:k]].sum() for k in steps]) / areas.sum()
    black = hidden_image(image, segments, "black", value_range)
    deletion = predict_rows(predict_fn, image, black, segments, shown, batch_size, timings)[:, label]
    mean_colour = np.broadcast_to(image.mean(axis=(0, 1)), image.shape).astype(image.dtype)
    insertion = predict_rows(predict_fn, image, mean_colour, segments, 1 - shown, batch_size, timings)[:, label]
    return deletion, float(np.trapezoid(deletion, x)), insertion, float(np.trapezoid(insertion, x))

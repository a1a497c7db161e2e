"""The model's probabilities for 0/1 masks of superpixels kept: checked, batched, each distinct mask predicted once."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from models.outputs import class_columns
from worker.engine.errors import ModelOutputError
from worker.engine.fills import fill_perturbed

PredictFn = Callable[[np.ndarray], np.ndarray]
PROBABILITY_TOLERANCE = 1e-3


def as_probabilities(output: np.ndarray, expected_rows: int) -> np.ndarray:
    """Check a model's output is one probability vector per image; one sigmoid becomes [1 - p, p]."""
    out = np.array(output, dtype=np.float64)  # a copy: the input buffer is reused for the next batch
    if out.ndim == 1:
        out = out[:, None]
    if out.ndim != 2 or out.shape[0] != expected_rows:
        raise ModelOutputError(f"model returned shape {out.shape} for {expected_rows} images; want (n, classes)")
    out = class_columns(out)
    if not np.isfinite(out).all():
        raise ModelOutputError("model returned non-finite values")
    if out.min() < -PROBABILITY_TOLERANCE or out.max() > 1 + PROBABILITY_TOLERANCE:
        raise ModelOutputError(
            f"model outputs span [{out.min():.4g}, {out.max():.4g}]: not probabilities (logits? add a softmax)"
        )
    sums = out.sum(axis=1)
    if np.abs(sums - 1).max() > PROBABILITY_TOLERANCE:
        raise ModelOutputError(f"model outputs sum to {sums.min():.4g}..{sums.max():.4g}, not 1: not a probability vector")
    return out


def predict_rows(
    predict_fn: PredictFn, image: np.ndarray, hidden: np.ndarray, segments: np.ndarray, rows: np.ndarray,
    batch_size: int, timings: dict[str, float],
) -> np.ndarray:
    """Model probabilities for each 0/1 row of superpixels kept, in batches of at most `batch_size` images, so
    memory does not grow with the rows."""
    buffer = np.empty((min(batch_size, len(rows)), *image.shape), dtype=image.dtype)
    outputs = []
    for start in range(0, len(rows), batch_size):
        tick = time.perf_counter()
        chunk = rows[start : start + batch_size]
        batch = fill_perturbed(buffer[: len(chunk)], image, hidden, segments, chunk)
        tock = time.perf_counter()
        outputs.append(as_probabilities(predict_fn(batch), len(batch)))
        timings["sampling_s"] += tock - tick
        timings["model_s"] += time.perf_counter() - tock
    return np.concatenate(outputs)


class MaskPredictions:
    """The model's probabilities per 0/1 mask, each distinct mask predicted once over the whole explanation (common
    when an image has few superpixels: 2^n masks at most); `calls` counts the masks the model was asked about."""

    def __init__(self, predict_fn: PredictFn, image, hidden, segments, batch_size: int, timings: dict[str, float]):
        self.args = (predict_fn, image, hidden, segments)
        self.batch_size, self.timings = batch_size, timings
        self.known: dict[bytes, np.ndarray] = {}

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        tick = time.perf_counter()
        rows = np.ascontiguousarray(rows, dtype=np.int8)
        unique, inverse = np.unique(rows, axis=0, return_inverse=True)
        keys = [row.tobytes() for row in unique]
        new = [i for i, key in enumerate(keys) if key not in self.known]
        self.timings["sampling_s"] += time.perf_counter() - tick
        if new:
            predicted = predict_rows(*self.args, unique[new], self.batch_size, self.timings)
            self.known.update(zip((keys[i] for i in new), predicted))
        return np.stack([self.known[key] for key in keys])[inverse.ravel()]

    @property
    def calls(self) -> int:
        return len(self.known)

"""How many samples: a fixed count, or `auto`: block after block until the top superpixels have settled.

`auto` predicts AUTO_FIRST masks (and the image) first, then one block of the design at a time; after each, the
predicted label's surrogate is refitted on every sample so far, and sampling stops ("settled") once its top-k
superpixels are the same in the last AUTO_STEADY_FITS fits and, from the surrogate's covariance, two reruns with
other seeds would agree on at least AUTO_AGREEMENT of their top-k (Jaccard, simulated); else at AUTO_CAP masks
("cap"), so that a model whose output never settles (an untrained network, noise) stops too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from worker.engine import designs
from worker.engine.adjusted import AdjustedEstimator
from worker.engine.agreement import expected_agreement, top_k
from worker.engine.params import AUTO, ExplainParams
from worker.engine.prediction import MaskPredictions
from worker.engine.shrinkage import ShrunkEstimator
from worker.engine.surrogate import LimeEstimator

ESTIMATORS = {"lime": LimeEstimator, "adjusted": AdjustedEstimator, "shrunk": ShrunkEstimator}
AUTO_FIRST = 256
AUTO_STEADY_FITS = 2
AUTO_AGREEMENT = 0.85
AUTO_CAP = 1024


@dataclass(frozen=True)
class Sampling:
    """How an explanation's perturbations were drawn: the samples used (the image itself included), the distinct
    masks the model was asked to predict for them (a mask drawn twice is predicted once), and why sampling stopped:
    "fixed" (a fixed count), "settled" or "cap" (auto)."""

    samples: int
    model_calls: int
    stop: str


@dataclass
class Samples:
    data: np.ndarray  # (samples, n_features) 0/1, the first row the image itself
    probabilities: np.ndarray  # (samples, classes)
    sampling: Sampling
    estimator: LimeEstimator | AdjustedEstimator


def sample(predictions: MaskPredictions, n_features: int, params: ExplainParams, seed: int, timings: dict[str, float]) -> Samples:
    """Draw the design's masks for `seed`, predict them, and stop as params.num_samples says."""
    random_state = np.random.RandomState(seed)
    estimator = ESTIMATORS[params.estimator](n_features, seed)
    if params.num_samples != AUTO:
        tick = time.perf_counter()
        data = designs.draw(params.design, random_state, n_features, params.num_samples)
        timings["sampling_s"] += time.perf_counter() - tick
        return Samples(data, predictions(data), Sampling(len(data), predictions.calls, "fixed"), estimator)

    stream = designs.blocks(params.design, random_state, n_features)
    rows = [np.ones((1, n_features), dtype=np.int8)]
    while sum(len(block) for block in rows) - 1 < AUTO_FIRST:
        rows.append(next(stream))
    predicted = [predictions(np.concatenate(rows))]
    tops: list[set[int]] = []
    while True:
        data, probabilities = np.concatenate(rows), np.concatenate(predicted)
        tick = time.perf_counter()
        estimate = estimator.estimate(data, probabilities[:, int(np.argmax(probabilities[0]))])
        tops.append(top_k(estimate.weights))
        steady = len(tops) >= AUTO_STEADY_FITS and all(top == tops[-1] for top in tops[-AUTO_STEADY_FITS:])
        settled = steady and expected_agreement(estimate.weights, estimate.covariance) >= AUTO_AGREEMENT
        timings["fit_s"] += time.perf_counter() - tick
        if settled or len(data) - 1 + designs.block_rows(params.design, n_features) > AUTO_CAP:
            return Samples(data, probabilities, Sampling(len(data), predictions.calls, "settled" if settled else "cap"), estimator)
        rows.append(next(stream))
        predicted.append(predictions(rows[-1]))

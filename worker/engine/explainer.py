"""`explain`: segment, draw and predict the masks, fit the surrogate per label, measure faithfulness and stability."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from worker.engine.agreement import top_k_jaccard
from worker.engine.faithfulness import FAITHFULNESS_REFERENCE, faithfulness_curves
from worker.engine.fills import hidden_image
from worker.engine.inputs import conform_image
from worker.engine.params import ExplainParams
from worker.engine.prediction import MaskPredictions, PredictFn
from worker.engine.segmentation import segment
from worker.engine.stopping import Sampling, sample
from worker.engine.surrogate import LabelExplanation


@dataclass
class Explanation:
    predicted_label: int
    probabilities: np.ndarray  # (num_classes,) for the unperturbed image
    segments: np.ndarray  # (H, W) segment id per pixel, ids 0..n_segments-1
    labels: dict[int, LabelExplanation]
    # Faithfulness with FAITHFULNESS_REFERENCE: the predicted class's probability as superpixels are deleted
    # (highest weight first; lower area is better) and inserted into the image's mean colour (higher is better).
    deletion_curve: np.ndarray
    deletion_auc: float
    insertion_curve: np.ndarray
    insertion_auc: float
    stability: float | None = None  # top-5 Jaccard across seeds, when stability_seeds > 0
    timings: dict[str, float] = field(default_factory=dict)
    sampling: Sampling | None = None
    faithfulness_reference: str = FAITHFULNESS_REFERENCE

    @property
    def n_segments(self) -> int:
        return int(self.segments.max()) + 1

    def segment_areas(self) -> np.ndarray:
        return np.bincount(self.segments.ravel(), minlength=self.n_segments)


def explain(
    image: np.ndarray,
    predict_fn: PredictFn,
    params: ExplainParams = ExplainParams(),
    *,
    true_label: int | None = None,
    input_shape: Sequence[int] | None = None,
    value_range: tuple[float, float] = (0.0, 1.0),
) -> Explanation:
    """Explain the model's prediction on one image with LIME.

    Labels explained: the `top_labels` most probable, or else the predicted label and `true_label`.
    Raises ImageError for an image that does not fit and ModelOutputError for a model whose output
    is not a probability vector. The random state is made fresh from the seed for every image, so an
    explanation depends only on the image, the model, the parameters and the seed.
    """
    started = time.perf_counter()
    timings = {"segmentation_s": 0.0, "sampling_s": 0.0, "model_s": 0.0, "fit_s": 0.0}
    image = conform_image(image, input_shape, value_range)

    tick = time.perf_counter()
    segments = segment(image, params)
    hidden = hidden_image(image, segments, params.hide, value_range)
    timings["segmentation_s"] = time.perf_counter() - tick

    batch_size = params.batch_for(image.shape)
    n_features = int(segments.max()) + 1
    predictions = MaskPredictions(predict_fn, image, hidden, segments, batch_size, timings)
    drawn = sample(predictions, n_features, params, params.seed, timings)
    probabilities = drawn.probabilities[0]
    num_classes = len(probabilities)
    if true_label is not None and not 0 <= true_label < num_classes:
        raise ValueError(f"true label {true_label} is not one of the model's {num_classes} classes")
    predicted = int(np.argmax(probabilities))
    if params.top_labels:
        # Stable sort on the negated probabilities, so ties keep argmax's choice first.
        targets = [int(x) for x in np.argsort(-probabilities, kind="stable")[: params.top_labels]]
    else:
        targets = [predicted] + ([true_label] if true_label is not None and true_label != predicted else [])

    tick = time.perf_counter()
    explained = {
        label: drawn.estimator.explain_label(drawn.data, drawn.probabilities[:, label], label) for label in targets
    }
    timings["fit_s"] += time.perf_counter() - tick

    deletion, deletion_auc, insertion, insertion_auc = faithfulness_curves(
        predict_fn, image, segments, explained[predicted].weights, predicted, value_range, batch_size, timings
    )
    stability = None
    if params.stability_seeds:
        tick = time.perf_counter()
        rankings = [explained[predicted].weights]
        for offset in range(1, params.stability_seeds + 1):
            # a fresh cache: each seed's model calls are its own, as they would be in a run with that seed
            again = sample(
                MaskPredictions(predict_fn, image, hidden, segments, batch_size, timings), n_features, params,
                params.seed + offset, timings,
            )
            rankings.append(again.estimator.explain_label(again.data, again.probabilities[:, predicted], predicted).weights)
        stability = top_k_jaccard(rankings)
        timings["stability_s"] = time.perf_counter() - tick
    timings["total_s"] = time.perf_counter() - started
    return Explanation(
        predicted, probabilities, segments, explained, deletion, deletion_auc, insertion, insertion_auc, stability,
        timings, drawn.sampling,
    )

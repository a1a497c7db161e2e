"""What the quality and peers benchmarks share: the data sets whose answer is known, the figures measured against
it, lime's 20,000-sample reference per image (cached), and worker processes pinned to one thread.

Two data sets with a known answer, different in kind:
- rectangles: the demo's validation images of class `rectangle` that its CNN gets right; the answer is the large
  white rectangle the generator painted;
- shapes: the validation images of the shapes demo (three small rings or three small pluses among clutter on a
  noisy background) that its CNN (a different architecture) gets right, both classes; the answer is the objects.

The by-construction check (worker.engine.construct) runs on those two and on two more: tagged (the shapes with a
planted shortcut; the evidence is the objects and, where it is painted, the tag) and glyphs (benchmarks.glyphs:
handwritten digits on photographs, a user-style model; never tuned on).
"""

from __future__ import annotations

import hashlib
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REFERENCE_SAMPLES = 20_000
REFERENCE_SEED = 10_000  # not a seed any explanation in the benchmarks uses
ANSWER_DATASETS = ("rectangles", "shapes")
CONSTRUCT_DATASETS = ("rectangles", "shapes", "tagged", "glyphs")
# lime's way, as users run it: 1000 independent coin-flip masks and lime's fit (at whatever segmentation and fill)
FIXED_1000 = {"num_samples": 1000, "design": "independent", "estimator": "lime"}

_classifiers: dict = {}


@dataclass
class KnownAnswer:
    dataset: str
    model_path: str
    images: np.ndarray
    masks: np.ndarray  # (n, H, W) bool: the evidence
    labels: np.ndarray  # the class the evidence is for (the true label; the model predicts it)
    accuracy: float | None = None  # the model's validation accuracy, as its training measured it


def child_init() -> None:
    """A benchmark worker process: TensorFlow and BLAS on one thread each."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from threadpoolctl import threadpool_limits

    from models.classifier import configure_tensorflow

    configure_tensorflow(1)
    threadpool_limits(1)


def classifier(path: str):
    """The model at `path`, loaded once per process and warmed up."""
    if path not in _classifiers:
        from models.classifier import load_classifier

        loaded = load_classifier(path)
        loaded.warm_up()
        _classifiers[path] = loaded
    return _classifiers[path]


def predict(model_path: str, images: np.ndarray) -> np.ndarray:
    return classifier(model_path).predict(images)


def known_answer(dataset: str, pool, count: int | None) -> KnownAnswer:
    """The first `count` validation images of `dataset` that its demo model (trained if missing) gets right, with
    their evidence masks. Rectangles: class `rectangle` only (the other class has no evidence to point at); tagged:
    the evidence holds the tag where it is painted (glyphs: benchmarks.glyphs.glyphs_answer)."""
    from models.artifacts import read_metadata
    from models.datasets import load_dataset, tag_box_mask
    from producer.service import ensure_demo_model

    model_path = str(ensure_demo_model(dataset))
    metadata = read_metadata(model_path)
    data = load_dataset(
        dataset, images=metadata.images, val_fraction=metadata.val_fraction or 0.2, seed=metadata.seed or 0,
        split_seed=metadata.split_seed if metadata.split_seed is not None else 42,
    )
    predicted = pool.submit(predict, model_path, data.x_val).result().argmax(axis=1)
    right = predicted == data.y_val
    if dataset == "rectangles":
        right &= data.y_val == 0
    masks = data.val_masks
    if dataset == "tagged":
        masks = masks | (data.val_tagged[:, None, None] & tag_box_mask(data.x_val.shape[1]))
    keep = np.flatnonzero(right)[:count]
    return KnownAnswer(dataset, model_path, data.x_val[keep], masks[keep], data.y_val[keep], metadata.val_accuracy)


def against_the_answer(segments: np.ndarray, weights: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """(pointing: 1.0 if the top-weighted superpixel has at least half its pixels on the answer, share of the
    positive weight x area that lies on it)."""
    from audit.maps import evidence_figures

    pointing, share = evidence_figures(segments, weights, mask)
    return float(pointing), share


def mean_figures(rows: list[dict]) -> dict:
    """Each figure's mean over the images' rows."""
    return {key: statistics.mean(row[key] for row in rows) for key in rows[0]}


def reference_weights(model_path: str, image: np.ndarray, label: int, params: dict, cache: Path) -> np.ndarray:
    """lime's quantity for this image, label and segmentation and fill, as well as it can be had: lime's fit on
    REFERENCE_SAMPLES independent masks. Computed once and kept in `cache`, keyed by the model's bytes, the image,
    the label and the settings that change it."""
    from worker.engine import ExplainParams
    from worker.engine.designs import draw
    from worker.engine.fills import hidden_image
    from worker.engine.prediction import MaskPredictions
    from worker.engine.segmentation import segment
    from worker.engine.surrogate import LimeEstimator

    model = classifier(model_path)
    settings = ExplainParams(**params)
    key = hashlib.sha256(
        model.sha256.encode() + np.ascontiguousarray(image).tobytes()
        + repr((label, settings.segmentation, settings.n_segments, settings.kernel_size, settings.compactness,
                settings.sigma, settings.slic_lab, settings.scale, settings.min_size, settings.hide, settings.seed,
                REFERENCE_SAMPLES, REFERENCE_SEED)).encode()
    ).hexdigest()[:32]
    path = cache / f"{key}.npy"
    if path.exists():
        return np.load(path)
    segments = segment(image, settings)
    n_features = int(segments.max()) + 1
    timings = {"sampling_s": 0.0, "model_s": 0.0}
    predictions = MaskPredictions(model.predict, image, hidden_image(image, segments, settings.hide), segments,
                                  settings.batch_for(image.shape), timings)
    masks = draw("independent", np.random.RandomState(REFERENCE_SEED), n_features, REFERENCE_SAMPLES)
    weights = LimeEstimator(n_features, REFERENCE_SEED).estimate(masks, predictions(masks)[:, label]).weights
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, weights)
    return weights


def reference_cache() -> Path:
    from core.settings import settings

    return settings.data_dir / "benchmarks" / "references"

"""The explanation engine: image + predict function + parameters -> LIME explanation.

A pure function with no broker, no database and no TensorFlow import: the predict function is
anything that maps a float32 batch (n, H, W, C) to class probabilities (n, k).

It samples and fits exactly as `lime_image.LimeImageExplainer.explain_instance` does (the fit is
lime's own `LimeBase`), but builds the perturbed images vectorised, in bounded chunks, and calls the
model in large batches instead of lime's per-sample `deepcopy` loop and 10-image `model.predict` calls.
The random state is made fresh from the seed for every image, so an explanation depends only on the
image, the model, the parameters and the seed, never on which process made it or in which order.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Literal, Sequence

import numpy as np

from core.images import PixelError, to_value_range
from models.outputs import class_columns

PredictFn = Callable[[np.ndarray], np.ndarray]

KERNEL_WIDTH = 0.25  # lime_image.LimeImageExplainer's default
CURVE_STEPS = 10
HIDES = ("mean", "grey", "black", "blur")
TOP_K = 5  # the superpixels whose agreement across seeds is the stability
# One reference for every setting, so that faithfulness figures compare across settings and runs (after RISE).
# Not grey and not a mild blur: the demo CNN calls a plain grey image `rectangle` (p = 0.80) and still finds the
# rectangle in a blur of sigma 16 (p = 0.66); black (0.13) and the image's mean colour (0.19) carry no evidence.
FAITHFULNESS_REFERENCE = (
    "deletion to black (the low end of the value range), insertion from the image's mean colour; x = share of pixels"
)
# The article's exact settings: lime's quickshift, hidden superpixels in their own mean colour, 1000 samples.
ARTICLE_PRESET = {
    "segmentation": "quickshift", "kernel_size": 4, "max_dist": 200, "ratio": 0.2, "hide": "mean", "num_samples": 1000,
}
# --num-samples auto: samples drawn in rounds from one stream (a run of N samples is a prefix of a run of 2N), the
# surrogate refitted on all samples after each round, and sampling stopped ("settled") once the top-k superpixels
# have not changed for AUTO_STEADY_ROUNDS refits and, from the surrogate's standard errors, two reruns with other
# seeds would agree on at least AUTO_AGREEMENT of their top-k (Jaccard, simulated): the weights around rank k are
# clear of the noise. Else at AUTO_CAP ("cap"). Chosen with the quality benchmark's streams (see README).
AUTO = "auto"
AUTO_ROUND = 100
AUTO_STEADY_ROUNDS = 2
AUTO_AGREEMENT = 0.8
AUTO_CAP = 3000
AGREEMENT_DRAWS = 64
PROBABILITY_TOLERANCE = 1e-3
BATCH_PIXEL_BUDGET = 1 << 22
MIN_AUTO_BATCH, MAX_AUTO_BATCH = 16, 256


class ExplainError(ValueError):
    """Base class of the engine's typed errors: the input cannot be explained as given."""


class ImageError(ExplainError):
    """The image does not fit the model (rank, size, channels, dtype, non-finite or out-of-range pixels)."""


class ModelOutputError(ExplainError):
    """The predict function did not return one probability vector per image."""


@dataclass(frozen=True)
class ExplainParams:
    """Everything besides the image and the model that an explanation depends on."""

    # The defaults are the fastest settings that meet the quality targets of `python -m benchmarks.quality`
    # (pointing >= 0.95, stability >= 0.85 on the demo's known rectangles); ARTICLE_PRESET keeps lime's own.
    # "auto": sample until the top superpixels have settled (AUTO above), at most AUTO_CAP.
    num_samples: int | Literal["auto"] = AUTO
    segmentation: Literal["quickshift", "slic"] = "slic"
    # lime's quickshift defaults
    kernel_size: float = 4
    max_dist: float = 200
    ratio: float = 0.2
    # SLIC settings, used when segmentation == "slic"
    n_segments: int = 50
    compactness: float = 10.0
    sigma: float = 1.0
    top_labels: int | None = None  # None: explain the predicted label and the true label (when known)
    # What a switched-off superpixel shows: "mean" (its own mean colour, lime's default), "grey", "black",
    # "blur" (the image blurred), or a number: that share of the value range (0 black, 0.5 grey, 1 white).
    hide: str = "grey"
    seed: int = 0
    # Images built and sent to the model at once; bounds memory. None: as many as fit in
    # BATCH_PIXEL_BUDGET pixels (256 at 64x64, 64 at 224x224: larger batches of big images run slower).
    batch_size: int | None = None
    stability_seeds: int = 0  # explain again with this many other seeds (same segmentation): top-5 agreement

    def __post_init__(self) -> None:
        if self.num_samples != AUTO and (not isinstance(self.num_samples, int) or self.num_samples < 2):
            raise ValueError(f"num_samples must be {AUTO!r} or a whole number of at least 2, got {self.num_samples!r}")
        if self.segmentation not in ("quickshift", "slic"):
            raise ValueError(f"segmentation must be 'quickshift' or 'slic', got {self.segmentation!r}")
        if self.hide not in HIDES:
            try:
                value = float(self.hide)
            except ValueError:
                value = -1.0
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"hide must be one of {', '.join(HIDES)} or a number in [0, 1], got {self.hide!r}")
        if self.stability_seeds < 0:
            raise ValueError(f"stability_seeds must be 0 or more, got {self.stability_seeds}")
        if self.top_labels is not None and self.top_labels < 1:
            raise ValueError(f"top_labels must be at least 1, got {self.top_labels}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")

    def to_dict(self) -> dict:
        return asdict(self)

    def batch_for(self, image_shape: Sequence[int]) -> int:
        """The batch size for images of this shape: the explicit one, or a power of two in budget."""
        if self.batch_size is not None:
            return self.batch_size
        fitting = BATCH_PIXEL_BUDGET // (image_shape[0] * image_shape[1])
        return int(min(MAX_AUTO_BATCH, max(MIN_AUTO_BATCH, 2 ** int(np.log2(max(fitting, 1))))))


@dataclass
class LabelExplanation:
    """lime's linear surrogate for one label: weight per segment, intercept, R^2, local prediction."""

    label: int
    weights: np.ndarray  # (n_segments,) indexed by segment id
    intercept: float
    score: float
    local_prediction: float


@dataclass(frozen=True)
class Sampling:
    """How an explanation's perturbations were drawn: the samples used, the distinct masks the model was asked to
    predict for them (a mask drawn twice is predicted once), and why sampling stopped: "fixed" (a fixed count),
    "settled" or "cap" (--num-samples auto)."""

    samples: int
    model_calls: int
    stop: str


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


def conform_image(
    image: np.ndarray,
    input_shape: Sequence[int] | None = None,
    value_range: tuple[float, float] = (0.0, 1.0),
) -> np.ndarray:
    """Return the image as float32 (H, W, C) in `value_range`, or raise ImageError saying what is wrong.

    Grayscale becomes RGB when the model wants 3 channels, RGBA loses its alpha, and integer images are scaled
    as core.images.to_value_range says; nothing is resized.
    """
    try:
        array = to_value_range(image, value_range)
    except PixelError as error:
        raise ImageError(str(error)) from None
    if min(array.shape[:2]) < 2:
        raise ImageError(f"image of shape {array.shape} is too small to segment")

    channels = array.shape[2]
    wanted_channels = input_shape[2] if input_shape is not None else 3
    if channels == 4:
        array, channels = array[:, :, :3], 3
    if channels == 1 and wanted_channels == 3:
        array = np.repeat(array, 3, axis=2)
    elif channels != wanted_channels:
        raise ImageError(f"image has {channels} channels, the model wants {wanted_channels}")
    if wanted_channels != 3:
        raise ImageError(f"LIME's segmentation needs RGB images; the model wants {wanted_channels} channels")

    if input_shape is not None and tuple(array.shape[:2]) != tuple(input_shape[:2]):
        raise ImageError(
            f"image is {array.shape[0]}x{array.shape[1]}, the model wants {input_shape[0]}x{input_shape[1]}"
        )
    return np.ascontiguousarray(array)


def segment(image: np.ndarray, params: ExplainParams) -> np.ndarray:
    """Superpixels with ids 0..n-1 (lime assumes contiguous ids; SLIC starts at 1 by default)."""
    from skimage.segmentation import quickshift, slic

    if params.segmentation == "quickshift":
        raw = quickshift(
            image, kernel_size=params.kernel_size, max_dist=params.max_dist, ratio=params.ratio,
            rng=params.seed,
        )
    else:
        raw = slic(
            image, n_segments=params.n_segments, compactness=params.compactness, sigma=params.sigma,
            start_label=0,
        )
    _, ids = np.unique(raw, return_inverse=True)
    return ids.reshape(raw.shape).astype(np.int32)


def hidden_image(
    image: np.ndarray, segments: np.ndarray, hide: str, value_range: tuple[float, float] = (0.0, 1.0)
) -> np.ndarray:
    """What a switched-off superpixel shows (see ExplainParams.hide); constants are shares of the value range."""
    if hide == "mean":
        n = int(segments.max()) + 1
        flat = segments.ravel()
        counts = np.bincount(flat, minlength=n)
        means = np.stack(
            [np.bincount(flat, weights=image[..., c].ravel(), minlength=n) / counts for c in range(image.shape[2])],
            axis=1,
        )
        return means[segments].astype(image.dtype)
    if hide == "blur":
        from skimage.filters import gaussian

        sigma = max(image.shape[:2]) / 16
        return gaussian(image, sigma=sigma, channel_axis=-1, preserve_range=True).astype(image.dtype)
    share = {"grey": 0.5, "black": 0.0}.get(hide)
    share = float(hide) if share is None else share
    low, high = value_range
    return np.full_like(image, low + share * (high - low))


def fill_perturbed(out: np.ndarray, image: np.ndarray, hidden: np.ndarray, segments: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Write one image per row of the 0/1 matrix `rows` into `out`: superpixels with a 0 show `hidden`.

    Filling a reused buffer in place avoids allocating (and page-faulting) a fresh batch every time.
    """
    keep = rows.astype(bool)[:, segments]  # (b, H, W)
    out[:] = hidden
    np.copyto(out, image, where=keep[..., None])
    return out


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
    """Model probabilities for each 0/1 row of superpixels kept.

    Rows that repeat (common when an image has few superpixels: 2^n masks at most) are sent to the
    model once. At most `batch_size` images exist at a time, so memory does not grow with the rows.
    """
    tick = time.perf_counter()
    unique, inverse = np.unique(rows, axis=0, return_inverse=True)
    buffer = np.empty((min(batch_size, len(unique)), *image.shape), dtype=image.dtype)
    timings["sampling_s"] += time.perf_counter() - tick
    outputs = []
    for start in range(0, len(unique), batch_size):
        tick = time.perf_counter()
        chunk = unique[start : start + batch_size]
        batch = fill_perturbed(buffer[: len(chunk)], image, hidden, segments, chunk)
        tock = time.perf_counter()
        outputs.append(as_probabilities(predict_fn(batch), len(batch)))
        timings["sampling_s"] += tock - tick
        timings["model_s"] += time.perf_counter() - tock
    return np.concatenate(outputs)[inverse.ravel()]


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


def top_k(weights: np.ndarray, k: int = TOP_K) -> set[int]:
    """The k superpixels with the largest weights; at most half of them when an image has fewer than 2k, so that
    a segmentation with a handful of superpixels cannot agree with itself by listing them all."""
    k = min(k, max(1, len(weights) // 2))
    return {int(s) for s in np.argsort(-weights, kind="stable")[:k]}


def top_k_jaccard(rankings: Sequence[np.ndarray]) -> float:
    """Mean Jaccard overlap of the top-k superpixels over every pair of weight vectors (same segmentation)."""
    tops = [top_k(weights) for weights in rankings]
    pairs = [(a, b) for i, a in enumerate(tops) for b in tops[i + 1 :]]
    return float(np.mean([len(a & b) / len(a | b) for a, b in pairs]))


class _Predictions:
    """The model's probabilities per 0/1 mask of superpixels kept, each distinct mask predicted once."""

    def __init__(self, predict_fn: PredictFn, image, hidden, segments, batch_size: int, timings: dict[str, float]):
        self.args = (predict_fn, image, hidden, segments)
        self.batch_size, self.timings = batch_size, timings
        self.known: dict[bytes, np.ndarray] = {}

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        unique, inverse = np.unique(rows, axis=0, return_inverse=True)
        keys = [row.tobytes() for row in unique]
        new = [i for i, key in enumerate(keys) if key not in self.known]
        if new:
            predicted = predict_rows(*self.args, unique[new], self.batch_size, self.timings)
            self.known.update(zip((keys[i] for i in new), predicted))
        return np.stack([self.known[key] for key in keys])[inverse.ravel()]

    @property
    def calls(self) -> int:
        return len(self.known)


def sample_stream(seed: int, n_features: int):
    """--num-samples auto's draws: rounds of AUTO_ROUND masks from one random state, the first mask keeping every
    superpixel; the same seed gives the same rounds in the same order."""
    random_state = np.random.RandomState(seed)
    first = True
    while True:
        rows = random_state.randint(0, 2, AUTO_ROUND * n_features).reshape((AUTO_ROUND, n_features))
        if first:
            rows[0, :] = 1
            first = False
        yield rows


def _draw_and_predict(
    predict_fn: PredictFn, image: np.ndarray, hidden: np.ndarray, segments: np.ndarray, num_samples: int | str,
    seed: int, batch_size: int, timings: dict[str, float],
) -> tuple[np.ndarray, np.ndarray, np.random.RandomState, Sampling]:
    """The masks of superpixels kept (the first keeps all), their predictions, the random state for the fit, and
    how they were drawn: lime's draw for a fixed count, rounds until settled for AUTO."""
    predictions = _Predictions(predict_fn, image, hidden, segments, batch_size, timings)
    n_features = int(segments.max()) + 1
    if num_samples == AUTO:
        data, labels, stop = _draw_until_settled(predictions, sample_stream(seed, n_features), timings)
        # lime's fit takes a random state; with `auto` it is a fresh one from the seed (the stream has its own)
        return data, labels, np.random.RandomState(seed), Sampling(len(data), predictions.calls, stop)
    tick = time.perf_counter()
    random_state = np.random.RandomState(seed)
    # The same draw, in the same order, as lime_image.LimeImageExplainer.data_labels.
    data = random_state.randint(0, 2, num_samples * n_features).reshape((num_samples, n_features))
    data[0, :] = 1
    timings["sampling_s"] += time.perf_counter() - tick
    labels = predictions(data)
    return data, labels, random_state, Sampling(num_samples, predictions.calls, "fixed")


def _draw_until_settled(predictions: _Predictions, stream, timings: dict[str, float]) -> tuple[np.ndarray, np.ndarray, str]:
    """Rounds of the stream until the predicted label's top-k superpixels have settled (see AUTO), or AUTO_CAP."""
    rows: list[np.ndarray] = []
    predicted: list[np.ndarray] = []
    tops: list[set[int]] = []
    while True:
        rows.append(next(stream))
        predicted.append(predictions(rows[-1]))  # the new round's masks only: earlier ones are known
        data, labels = np.concatenate(rows), np.concatenate(predicted)
        tick = time.perf_counter()
        weights, covariance = surrogate(data, labels[:, int(np.argmax(labels[0]))])
        tops.append(top_k(weights))
        steady = len(tops) > AUTO_STEADY_ROUNDS and all(top == tops[-1] for top in tops[-AUTO_STEADY_ROUNDS - 1 :])
        settled = steady and expected_agreement(weights, covariance) >= AUTO_AGREEMENT
        timings["fit_s"] += time.perf_counter() - tick
        if settled:
            return data, labels, "settled"
        if len(data) >= AUTO_CAP:
            return data, labels, "cap"


def surrogate(data: np.ndarray, target: np.ndarray, alpha: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """lime's surrogate in closed form (weighted ridge, alpha 1, with intercept; the kernel on the cosine distance to
    the whole image): its weights, equal to lime's fit, and their covariance (sandwich form, residual variance)."""
    distances = 1 - (data @ data[0]) / np.maximum(np.sqrt(data.sum(axis=1) * data[0].sum()), 1e-12)
    w = np.sqrt(np.exp(-(distances**2) / KERNEL_WIDTH**2))
    centred = data - w @ data / w.sum()
    y = target - w @ target / w.sum()
    weighted = centred.T * w
    gram = weighted @ centred
    inverse = np.linalg.inv(gram + alpha * np.eye(len(gram)))
    weights = inverse @ (weighted @ y)
    residuals = y - centred @ weights
    variance = (w * residuals**2).sum() / max(w.sum() - len(weights) - 1, 1.0)
    return weights, variance * inverse @ gram @ inverse


def expected_agreement(weights: np.ndarray, covariance: np.ndarray) -> float:
    """The top-k Jaccard that two reruns would reach if their weights scattered around these by the covariance:
    AGREEMENT_DRAWS simulated pairs, from a fixed random state (the same figures give the same answer)."""
    k = len(top_k(weights))
    if k >= len(weights):
        return 1.0
    factor = np.linalg.cholesky(covariance + 1e-15 * np.eye(len(weights)))
    draws = np.random.RandomState(0).standard_normal((2 * AGREEMENT_DRAWS, len(weights))) @ factor.T + weights
    tops = np.argsort(-draws, axis=1)[:, :k]
    return float(np.mean([len(set(a) & set(b)) / len(set(a) | set(b)) for a, b in zip(tops[0::2], tops[1::2])]))


def _fit(data: np.ndarray, predictions: np.ndarray, label: int, random_state: np.random.RandomState) -> LabelExplanation:
    """lime's own weighted ridge fit (LimeBase) of one label, as explain_instance makes it."""
    from lime.lime_base import LimeBase
    from sklearn.metrics import pairwise_distances

    distances = pairwise_distances(data, data[0].reshape(1, -1), metric="cosine").ravel()
    base = LimeBase(lambda d: np.sqrt(np.exp(-(d**2) / KERNEL_WIDTH**2)), random_state=random_state)
    intercept, pairs, score, local_pred = base.explain_instance_with_data(
        data, predictions, distances, label, num_features=100000, feature_selection="auto"
    )
    weights = np.zeros(data.shape[1])
    for feature, weight in pairs:
        weights[feature] = weight
    return LabelExplanation(label, weights, float(intercept), float(score), float(np.ravel(local_pred)[0]))


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
    is not a probability vector.
    """
    started = time.perf_counter()
    timings = {"segmentation_s": 0.0, "sampling_s": 0.0, "model_s": 0.0, "fit_s": 0.0}
    image = conform_image(image, input_shape, value_range)

    tick = time.perf_counter()
    segments = segment(image, params)
    hidden = hidden_image(image, segments, params.hide, value_range)
    timings["segmentation_s"] = time.perf_counter() - tick

    batch_size = params.batch_for(image.shape)
    data, labels, random_state, sampling = _draw_and_predict(
        predict_fn, image, hidden, segments, params.num_samples, params.seed, batch_size, timings
    )
    probabilities = labels[0]
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
    explained = {label: _fit(data, labels, label, random_state) for label in targets}
    timings["fit_s"] += time.perf_counter() - tick

    deletion, deletion_auc, insertion, insertion_auc = faithfulness_curves(
        predict_fn, image, segments, explained[predicted].weights, predicted, value_range, batch_size, timings
    )
    stability = None
    if params.stability_seeds:
        tick = time.perf_counter()
        rankings = [explained[predicted].weights]
        for offset in range(1, params.stability_seeds + 1):
            data, labels, random_state, _ = _draw_and_predict(
                predict_fn, image, hidden, segments, params.num_samples, params.seed + offset, batch_size, timings
            )
            rankings.append(_fit(data, labels, predicted, random_state).weights)
        stability = top_k_jaccard(rankings)
        timings["stability_s"] = time.perf_counter() - tick
    timings["total_s"] = time.perf_counter() - started
    return Explanation(
        predicted, probabilities, segments, explained, deletion, deletion_auc, insertion, insertion_auc, stability,
        timings, sampling,
    )

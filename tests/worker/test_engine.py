"""The engine against lime itself, for reproducibility, and on bad input. No broker, no database."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
from lime.lime_image import LimeImageExplainer

from models.datasets import load_dataset, make_rectangles
from worker.engine import ARTICLE_PRESET, ExplainParams, ImageError, ModelOutputError, explain
from worker.engine.agreement import top_k, top_k_jaccard
from worker.engine.faithfulness import faithfulness_curves
from worker.engine.fills import hidden_image
from worker.engine.segmentation import segment

IMAGES, LABELS = make_rectangles(8, seed=11)
LIME = {"design": "independent", "estimator": "lime"}  # lime's own draw and fit


def quadrant_softmax(images: np.ndarray) -> np.ndarray:
    """A deterministic 3-class NumPy 'model': softmax of a fixed linear map of quadrant colour means."""
    n, h, w, _ = images.shape
    quadrants = images.reshape(n, 2, h // 2, 2, w // 2, 3).mean(axis=(2, 4)).reshape(n, 12)
    logits = quadrants @ np.random.RandomState(0).normal(size=(12, 3)) * 4
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


LIME_HIDE_COLOR = {"mean": None, "grey": 0.5, "black": 0.0}  # lime's hide_color for our fills (images in 0..1)


def lime_weights(image, predict, params: ExplainParams, labels) -> dict[int, tuple]:
    """lime's own explain_instance, one label per call (lime keeps a single score for all labels)."""
    out = {}
    for label in labels:
        explanation = LimeImageExplainer(random_state=params.seed).explain_instance(
            image, predict, labels=(label,), top_labels=None, hide_color=LIME_HIDE_COLOR[params.hide] if params.hide in LIME_HIDE_COLOR else float(params.hide),
            num_samples=params.num_samples, batch_size=params.batch_for(image.shape), random_seed=params.seed,
            segmentation_fn=lambda im: segment(im, params),
        )
        weights = np.zeros(int(segment(image, params).max()) + 1)
        for feature, weight in explanation.local_exp[label]:
            weights[feature] = weight
        out[label] = (weights, explanation.intercept[label], explanation.score, explanation.local_pred[0])
    return out


def assert_matches_lime(ours, theirs, atol):
    for label, (weights, intercept, score, local_pred) in theirs.items():
        mine = ours.labels[label]
        np.testing.assert_allclose(mine.weights, weights, rtol=0, atol=atol)
        assert mine.intercept == pytest.approx(intercept, abs=atol)
        assert mine.score == pytest.approx(score, abs=atol)
        assert mine.local_prediction == pytest.approx(local_pred, abs=atol)


@pytest.mark.parametrize(
    "params",
    [
        ExplainParams(num_samples=300, hide="0", seed=5, **LIME),
        ExplainParams(num_samples=300, segmentation="slic", n_segments=30, hide="0.5", seed=1, batch_size=64, **LIME),
    ],
    ids=["quickshift", "slic"],
)
def test_weights_equal_lime_for_the_same_segments_and_draws(params):
    image = IMAGES[0]
    ours = explain(image, quadrant_softmax, params, true_label=2)
    assert set(ours.labels) == {ours.predicted_label, 2} or ours.predicted_label == 2
    assert_matches_lime(ours, lime_weights(image, quadrant_softmax, params, ours.labels), atol=1e-10)


def test_mean_colour_hiding_equals_lime():
    # lime averages each superpixel in float32, we in float64: equal to float32 rounding
    params = ExplainParams(**{**ARTICLE_PRESET, "num_samples": 300, "seed": 2})
    ours = explain(IMAGES[1], quadrant_softmax, params)
    assert_matches_lime(ours, lime_weights(IMAGES[1], quadrant_softmax, params, ours.labels), atol=1e-6)


def test_real_model_explanation_equals_lime(rectangles_model):
    from models.classifier import load_classifier

    classifier = load_classifier(rectangles_model)
    params = ExplainParams(num_samples=400, segmentation="slic", n_segments=25, seed=3, top_labels=2, **LIME)
    ours = explain(IMAGES[2], classifier.predict, params)
    assert set(ours.labels) == {0, 1}  # the one-sigmoid model explains both classes
    assert_matches_lime(ours, lime_weights(IMAGES[2], classifier.predict, params, [0, 1]), atol=1e-5)


def test_one_lime_explainer_drifts_but_the_engine_does_not():
    params = ExplainParams(num_samples=200, segmentation="slic", n_segments=20, seed=0, **LIME)
    explainer = LimeImageExplainer(random_state=0)
    segments = segment(IMAGES[3], params)
    first, second = (
        explainer.explain_instance(IMAGES[3], quadrant_softmax, top_labels=1, num_samples=200, segmentation_fn=lambda im: segments)
        for _ in range(2)
    )
    assert first.local_exp != second.local_exp  # lime: same image, same explainer, different answer
    a = explain(IMAGES[3], quadrant_softmax, params)
    b = explain(IMAGES[3], quadrant_softmax, params)
    np.testing.assert_array_equal(a.labels[a.predicted_label].weights, b.labels[b.predicted_label].weights)


def _explain_in_child(args):
    model_path, indices = args
    from models.classifier import configure_tensorflow, load_classifier

    configure_tensorflow(1)
    classifier = load_classifier(model_path)
    params = ExplainParams()
    results = {}
    for i in indices:
        e = explain(IMAGES[i], classifier.predict, params, true_label=int(LABELS[i]), input_shape=classifier.input_shape)
        results[i] = (e.segments, {k: v.weights for k, v in e.labels.items()}, e.probabilities, e.deletion_auc)
    return results


@pytest.mark.slow  # three fresh processes, each importing TensorFlow
def test_results_do_not_depend_on_process_or_order(rectangles_model):
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        forward = pool.submit(_explain_in_child, (rectangles_model, [0, 1, 2, 3])).result()
    with ProcessPoolExecutor(2, mp_context=spawn) as pool:
        backward = {}
        for part in pool.map(_explain_in_child, [(rectangles_model, [3, 1]), (rectangles_model, [2, 0])]):
            backward.update(part)
    for i in range(4):
        segments, weights, probabilities, auc = forward[i]
        np.testing.assert_array_equal(segments, backward[i][0])
        assert weights.keys() == backward[i][1].keys()
        for label in weights:
            np.testing.assert_array_equal(weights[label], backward[i][1][label])
        np.testing.assert_array_equal(probabilities, backward[i][2])
        assert auc == backward[i][3]


def test_the_model_never_sees_more_than_a_batch():
    seen = []

    def recording(images):
        seen.append(len(images))
        return quadrant_softmax(images)

    params = ExplainParams(num_samples=3000, segmentation="slic", n_segments=60, batch_size=64)
    e = explain(IMAGES[4], recording, params)
    assert max(seen) <= 64
    assert sum(seen) >= 2900  # ~60 superpixels: almost every sampled row is distinct and sent
    assert e.timings.keys() >= {"segmentation_s", "sampling_s", "model_s", "fit_s", "total_s"}
    assert e.timings["total_s"] >= e.timings["model_s"] + e.timings["segmentation_s"]


def test_automatic_batches_shrink_as_images_grow():
    params = ExplainParams()
    assert params.batch_for((64, 64, 3)) == 256
    assert params.batch_for((224, 224, 3)) == 64
    assert params.batch_for((2048, 2048, 3)) == 16
    assert ExplainParams(batch_size=7).batch_for((224, 224, 3)) == 7


def test_repeated_masks_are_predicted_once():
    calls = []

    def recording(images):
        calls.append(len(images))
        return quadrant_softmax(images)

    image = np.zeros((64, 64, 3), np.float32)
    image[:, 32:] = 1.0  # two flat halves: at most 2^n distinct masks for n superpixels
    e = explain(image, recording, ExplainParams(**ARTICLE_PRESET))  # lime's quickshift: a few superpixels
    assert calls[0] <= 2 ** e.n_segments < 1000


def test_faithfulness_rewards_the_superpixels_the_model_uses():
    def left_half_brightness(images):
        p = images[:, :, :32].mean(axis=(1, 2, 3))
        return np.stack([1 - p, p], axis=1)

    image = IMAGES[5].copy()
    image[:, :32] = np.clip(image[:, :32] + 0.5, 0, 1)
    params = ExplainParams(segmentation="slic", n_segments=30, hide="black")
    e = explain(image, left_half_brightness, params)
    assert e.deletion_curve[0] == pytest.approx(e.probabilities[e.predicted_label])
    assert e.insertion_curve[-1] == pytest.approx(e.probabilities[e.predicted_label])  # everything inserted
    assert len(e.deletion_curve) == len(e.insertion_curve) == 11 and 0.0 <= e.deletion_auc <= 1.0
    weights = e.labels[e.predicted_label].weights
    timings = {"sampling_s": 0.0, "model_s": 0.0}
    _, reversed_deletion, _, reversed_insertion = faithfulness_curves(
        left_half_brightness, image, e.segments, -weights, e.predicted_label, (0.0, 1.0), 64, timings
    )
    assert e.deletion_auc < reversed_deletion and e.insertion_auc > reversed_insertion


def test_fills_are_shares_of_the_value_range():
    image = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32) * 255
    segments = np.zeros((16, 16), np.int32)
    segments[8:] = 1
    assert np.all(hidden_image(image, segments, "grey", (0, 255)) == 127.5)
    assert np.all(hidden_image(image, segments, "black", (-1, 1)) == -1)
    assert np.all(hidden_image(image, segments, "0.25", (0, 1)) == 0.25)
    mean = hidden_image(image, segments, "mean", (0, 255))
    np.testing.assert_allclose(mean[0, 0], image[:8].mean(axis=(0, 1)), rtol=1e-5)
    blurred = hidden_image(image, segments, "blur", (0, 255))
    assert blurred.std() < image.std() / 2 and blurred.shape == image.shape


def test_stability_is_the_top_5_agreement_across_seeds():
    assert top_k_jaccard([np.arange(20.0), np.arange(20.0)]) == 1.0
    assert top_k_jaccard([np.arange(20.0), -np.arange(20.0)]) == 0.0
    assert top_k(np.array([5.0, 4.0, 3.0, 2.0])) == {0, 1}  # four superpixels: the top two, not all
    params = ExplainParams(segmentation="slic", n_segments=30, hide="grey", stability_seeds=2)
    e = explain(IMAGES[0], quadrant_softmax, params)
    assert 0.0 <= e.stability <= 1.0 and e.timings["stability_s"] > 0
    assert explain(IMAGES[0], quadrant_softmax, ExplainParams(num_samples=100)).stability is None


def test_a_fill_must_be_named_or_a_share():
    assert ExplainParams(hide="0.25").hide == "0.25"
    for wrong in ("purple", "1.5", "-0.1"):
        with pytest.raises(ValueError, match="hide must be one of"):
            ExplainParams(hide=wrong)


def test_labels_to_explain_default_to_predicted_and_true():
    e = explain(IMAGES[6], quadrant_softmax, ExplainParams(num_samples=100))
    assert list(e.labels) == [e.predicted_label]
    other = (e.predicted_label + 1) % 3
    e = explain(IMAGES[6], quadrant_softmax, ExplainParams(num_samples=100), true_label=other)
    assert list(e.labels) == [e.predicted_label, other]
    e = explain(IMAGES[6], quadrant_softmax, ExplainParams(num_samples=100, top_labels=3))
    assert sorted(e.labels) == [0, 1, 2] and list(e.labels)[0] == e.predicted_label
    with pytest.raises(ValueError, match="true label 7"):
        explain(IMAGES[6], quadrant_softmax, ExplainParams(num_samples=100), true_label=7)


# --- bad input: typed errors, not TensorFlow tracebacks -------------------------------------------

SHAPE = (64, 64, 3)


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((2, 64, 64, 3), np.float32), "not an image"),
        (np.zeros(64, np.float32), "not an image"),
        (np.zeros((32, 32, 3), np.float32), "image is 32x32, the model wants 64x64"),
        (np.full((64, 64, 3), np.nan, np.float32), "non-finite"),
        (np.full((64, 64, 3), np.inf, np.float32), "non-finite"),
        (np.full((64, 64, 3), 255.0, np.float32), "outside the model's range"),
        (np.zeros((64, 64, 2), np.float32), "2 channels, the model wants 3"),
        (np.zeros((64, 64, 5), np.float32), "5 channels, the model wants 3"),
        (np.zeros((64, 64, 3), bool), "not a numeric pixel type"),
        (np.full((64, 64, 3), "x"), "not a numeric pixel type"),
    ],
)
def test_bad_images_get_a_typed_error(image, message):
    with pytest.raises(ImageError, match=message):
        explain(image, quadrant_softmax, ExplainParams(num_samples=50), input_shape=SHAPE)


def test_a_wrong_size_image_is_refused_before_the_keras_model_runs(rectangles_model):
    from models.classifier import load_classifier

    classifier = load_classifier(rectangles_model)
    with pytest.raises(ImageError, match="the model wants 64x64"):
        explain(np.zeros((224, 224, 3), np.float32), classifier.predict, input_shape=classifier.input_shape)


def test_grayscale_rgba_and_integer_images_are_converted():
    rgb = IMAGES[7]
    grey = rgb.mean(axis=2)
    params = ExplainParams(num_samples=100)
    reference = explain(np.repeat(grey[:, :, None], 3, axis=2), quadrant_softmax, params, input_shape=SHAPE)
    for variant in (grey, grey[:, :, None]):
        e = explain(variant, quadrant_softmax, params, input_shape=SHAPE)
        np.testing.assert_array_equal(e.probabilities, reference.probabilities)
    rgba = np.concatenate([rgb, np.zeros((64, 64, 1), np.float32)], axis=2)
    np.testing.assert_array_equal(
        explain(rgba, quadrant_softmax, params).probabilities, explain(rgb, quadrant_softmax, params).probabilities
    )
    as_bytes = (rgb * 255).round().astype(np.uint8)
    e = explain(as_bytes, quadrant_softmax, params)
    np.testing.assert_allclose(e.probabilities, explain(as_bytes / 255.0, quadrant_softmax, params).probabilities)


@pytest.mark.parametrize(
    "predict, message",
    [
        (lambda x: np.log(quadrant_softmax(x)), "not probabilities"),
        (lambda x: quadrant_softmax(x) * 2 / 3, "sum to"),
        (lambda x: quadrant_softmax(x)[:1], "for .* images"),
        (lambda x: quadrant_softmax(x)[:, :, None], r"want \(n, classes\)"),
        (lambda x: np.full((len(x), 3), np.nan), "non-finite"),
    ],
    ids=["logits", "not-summing", "wrong-rows", "wrong-rank", "nan"],
)
def test_a_model_whose_output_is_not_a_probability_vector_is_refused(predict, message):
    with pytest.raises(ModelOutputError, match=message):
        explain(IMAGES[0], predict, ExplainParams(num_samples=50))


def test_bad_parameters_are_refused():
    for bad in ({"num_samples": 1}, {"segmentation": "grid"}, {"top_labels": 0}, {"batch_size": 0}):
        with pytest.raises(ValueError):
            ExplainParams(**bad)


def test_validation_set_explains_end_to_end(rectangles_model):
    from models.classifier import load_classifier

    classifier = load_classifier(rectangles_model)
    data = load_dataset("rectangles", images=200, val_fraction=0.1)
    for image, label in zip(data.x_val[:3], data.y_val[:3]):
        e = explain(image, classifier.predict, true_label=int(label), input_shape=classifier.input_shape)
        assert e.probabilities.shape == (2,) and e.segments.shape == (64, 64)
        assert e.segment_areas().sum() == 64 * 64


# --- --num-samples auto: blocks of the design until the top superpixels have settled ------------------------------

def five_bright_squares() -> np.ndarray:
    image = np.full((64, 64, 3), 0.1, np.float32)
    for i, (row, col) in enumerate([(4, 4), (4, 40), (26, 22), (44, 6), (44, 42)]):
        image[row : row + 14, col : col + 14] = 0.5 + 0.1 * i  # each its own brightness: ranks 1..5 are distinct
    return image


def brightness(images: np.ndarray) -> np.ndarray:
    """A 'model' that sees how bright the image is: its evidence is the five squares, and nothing else."""
    p = np.clip(images.mean(axis=(1, 2, 3)) * 3.5, 0, 1)  # the whole image: 0.85, predicted 0
    return np.stack([p, 1 - p], axis=1)


def noise(images: np.ndarray) -> np.ndarray:
    """A 'model' whose answer has nothing to do with the image."""
    p = np.random.default_rng().random(len(images))
    return np.stack([p, 1 - p], axis=1)


AUTO_SLIC = dict(num_samples="auto", segmentation="slic", n_segments=25, hide="black")


@pytest.mark.parametrize("estimator", ["lime", "adjusted"])
def test_auto_stops_early_on_a_settled_explanation_and_points_at_the_evidence(estimator):
    from worker.engine.stopping import AUTO_CAP

    result = explain(five_bright_squares(), brightness, ExplainParams(**AUTO_SLIC, estimator=estimator))
    assert result.predicted_label == 0 and result.sampling.stop == "settled"
    assert result.sampling.model_calls <= result.sampling.samples <= AUTO_CAP / 2
    on_squares = {int(s) for s in np.unique(result.segments[five_bright_squares()[:, :, 0] > 0.3])}
    assert top_k(result.labels[0].weights) <= on_squares


def test_auto_hits_the_cap_on_pure_noise():
    from worker.engine.stopping import AUTO_CAP

    result = explain(five_bright_squares(), noise, ExplainParams(**AUTO_SLIC))
    assert (result.sampling.stop, result.sampling.samples) == ("cap", AUTO_CAP + 1)


def test_auto_is_reproducible_for_a_seed_and_its_draws_are_a_prefix_of_longer_ones():
    from worker.engine.designs import block_rows, blocks
    from worker.engine.stopping import ESTIMATORS

    image = IMAGES[3]
    params = ExplainParams(**{**AUTO_SLIC, "hide": "grey", "seed": 5})

    def model(images):  # float64 throughout, so a batch's composition cannot change an image's probabilities
        return quadrant_softmax(images.astype(np.float64))

    first, again = (explain(image, model, params) for _ in range(2))
    assert first.sampling == again.sampling
    np.testing.assert_array_equal(first.labels[first.predicted_label].weights, again.labels[again.predicted_label].weights)

    n_features, used = first.n_segments, first.sampling.samples - 1
    size = block_rows("hadamard", n_features)
    stream = blocks("hadamard", np.random.RandomState(5), n_features)
    long = np.concatenate([next(stream) for _ in range(2 * used // size)])
    stream = blocks("hadamard", np.random.RandomState(5), n_features)
    short = np.concatenate([next(stream) for _ in range(used // size)])
    np.testing.assert_array_equal(long[: len(short)], short)  # N samples are the first N of 2N
    # and the explanation is the estimator's fit on exactly the image and those N masks
    data = np.concatenate([np.ones((1, n_features), np.int8), short])
    hidden = hidden_image(image, first.segments, "grey", (0.0, 1.0))
    perturbed = np.where(data.astype(bool)[:, first.segments][..., None], image, hidden)
    label = first.predicted_label
    refit = ESTIMATORS[params.estimator](n_features, 5).explain_label(data, model(perturbed)[:, label], label)
    np.testing.assert_allclose(refit.weights, first.labels[label].weights, rtol=1e-9)


def test_a_fixed_count_records_its_samples_and_distinct_masks():
    params = ExplainParams(num_samples=300, segmentation="slic", n_segments=4, **LIME)
    result = explain(IMAGES[0], quadrant_softmax, params)
    assert result.sampling.samples == 300 and result.sampling.stop == "fixed"
    assert result.sampling.model_calls <= 2**4  # 4 superpixels: at most 16 distinct masks, each predicted once
    balanced = explain(IMAGES[0], quadrant_softmax, ExplainParams(num_samples=300, segmentation="slic", n_segments=30))
    # ~30 superpixels: Hadamard blocks of 2 x 32 rows, rounded up to whole blocks, and the image itself
    assert balanced.sampling.samples == 1 + 64 * 5 == balanced.sampling.model_calls


def test_the_closed_form_surrogate_is_limes_fit():
    from worker.engine.surrogate import LimeEstimator, kernel_weights, weighted_ridge

    rng = np.random.RandomState(0)
    data = rng.randint(0, 2, (400, 30))
    data[0] = 1
    p = np.clip(data[:, :5].mean(axis=1) * 0.8 + rng.rand(400) * 0.1, 0, 1)
    estimate = weighted_ridge(data, p, kernel_weights(data))
    lime = LimeEstimator(30, 0).explain_label(data, p, 0)
    np.testing.assert_allclose(estimate.weights, lime.weights, atol=1e-12)
    assert estimate.intercept == pytest.approx(lime.intercept, abs=1e-12)
    assert estimate.covariance.shape == (30, 30) and (np.diag(estimate.covariance) > 0).all()

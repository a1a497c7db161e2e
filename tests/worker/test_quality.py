"""The default explanation shows what the demo model looked at: the rectangle (a handful of images; the whole
measurement is `python -m benchmarks.quality`)."""

from __future__ import annotations

import numpy as np

from benchmarks.known_answer import against_the_answer
from models.classifier import load_classifier
from models.datasets import load_dataset
from worker.engine import ARTICLE_PRESET, ExplainParams, explain


def test_the_default_explanation_points_at_the_rectangle(rectangles_model):
    classifier = load_classifier(rectangles_model)
    data = load_dataset("rectangles")  # the default preset's split, as the fixture trained it
    rectangles = np.flatnonzero(data.y_val == 0)[:12]
    right = [i for i in rectangles if classifier.predict(data.x_val[i : i + 1])[0].argmax() == 0][:6]
    assert len(right) == 6
    pointing, share = zip(*(
        against_the_answer(e.segments, e.labels[0].weights, data.val_masks[i])
        for i in right
        for e in [explain(data.x_val[i], classifier.predict, ExplainParams(), true_label=0)]
    ))
    assert sum(pointing) == 6 and np.mean(share) > 0.6
    article = ExplainParams(**ARTICLE_PRESET)
    assert ExplainParams() != article and article.segmentation == "quickshift" and article.hide == "mean"

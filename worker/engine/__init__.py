"""The explanation engine: image + predict function + parameters -> LIME explanation.

A pure package with no broker, no database and no TensorFlow import: the predict function is anything that maps a
float32 batch (n, H, W, C) to class probabilities (n, k). One entry, `explain`; one module per stage:

- params: ExplainParams, the presets;          - inputs: the image as the engine takes it;
- segmentation: superpixels;                   - fills: what a hidden superpixel shows, the perturbed images;
- designs/: how the masks are drawn (independent, paired, hadamard), one module each;
- prediction: the model's checked probabilities per mask, each distinct mask once, in bounded batches;
- surrogate: lime's weighted ridge fit;        - adjusted: the same quantity with a logistic control variate;
- shrinkage: the adjusted estimate shrunk where it cannot be told from noise (the default);
- stopping: a fixed count, or `auto`;          - agreement: top-k overlap and its prediction;
- faithfulness: deletion and insertion curves; - explainer: `explain`, which runs the stages;
- construct: the explainer checked by construction (the model wrapped to see only the evidence, or the background).

With the article's preset (independent masks, lime's fit) an explanation equals lime_image's explain_instance, but
the perturbed images are built vectorised, in bounded chunks, and the model is called in large batches instead of
lime's per-sample `deepcopy` loop and 10-image `model.predict` calls.
"""

from worker.engine.errors import ExplainError, ImageError, ModelOutputError
from worker.engine.explainer import Explanation, explain
from worker.engine.params import ARTICLE_PRESET, AUTO, ExplainParams

__all__ = [
    "ARTICLE_PRESET", "AUTO", "ExplainError", "ExplainParams", "Explanation", "ImageError", "ModelOutputError", "explain",
]

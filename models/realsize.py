"""Real-size networks as users bring them (keras.applications at 224x224, 1000 classes), made here without
downloading a weight: for the benchmarks and tests of runtimes, input checks and labels at real size.

`weights=None` alone gives a network whose outputs hardly depend on the image (every photograph gets the same
class), which says nothing about how explanations or runtimes behave. So the BatchNormalization layers get seeded
random scales and offsets, and the statistics training on photographs would have left in them: their moving mean and
variance are measured on scikit-image's photographs (statistics of random noise leave a photograph's activations, and
logits, in the thousands, where float32's rounding alone moves a probability by 1e-2). Its classifier is scaled so
that its logits spread as a trained network's do (a standard deviation of LOGIT_SPREAD on those photographs). The
network then maps different images to different outputs. It is still untrained: its classes mean nothing.
"""

from __future__ import annotations

import numpy as np

# keras.applications constructor and the --preprocess family its preprocess_input belongs to
NETWORKS = {
    "mobilenet_v2": ("MobileNetV2", "mobilenet_v2"),
    "resnet50": ("ResNet50", "resnet50"),
    "efficientnet_b0": ("EfficientNetB0", "efficientnet"),
}
CALIBRATION_IMAGES = 32
LOGIT_SPREAD = 4.0


def standin_network(name: str, side: int = 224, classes: int = 1000, seed: int = 0, logit_spread: float = LOGIT_SPREAD):
    """(an untrained keras.applications network `name` at side x side with seeded BatchNormalization, its
    preprocessing family). Takes RGB pixels in 0..255 through that family's preprocess_input. A smaller
    `logit_spread` makes its outputs less confident, and float32's rounding move them less."""
    import keras

    from models.classifier import preprocess_function

    constructor, family = NETWORKS[name]
    keras.utils.set_random_seed(seed)  # the convolution and dense weights
    model = getattr(keras.applications, constructor)(weights=None, input_shape=(side, side, 3), classes=classes)
    rng = np.random.default_rng(seed)
    normalisations = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momentums = [layer.momentum for layer in normalisations]
    for layer in normalisations:
        weights = layer.get_weights()
        shape = weights[0].shape
        layer.set_weights([rng.uniform(0.5, 1.5, shape).astype(np.float32), rng.normal(0, 0.5, shape).astype(np.float32),
                           *weights[2:]])
        layer.momentum = 0.0  # the next training-mode pass sets the moving statistics to its own
    images = preprocess_function(family)(calibration_images(side))
    model(images, training=True)
    for layer, momentum in zip(normalisations, momentums):
        layer.momentum = momentum
    classifier = model.layers[-1]  # keras.applications' `predictions`: Dense with a softmax
    features = np.asarray(keras.Model(model.inputs[0], classifier.input)(images, training=False))
    kernel, bias = classifier.get_weights()
    scale = logit_spread / float((features @ kernel + bias).std())
    classifier.set_weights([kernel * scale, bias * scale])
    return model, family


# scikit-image's bundled photographs (no download), colour and grey, of several sizes (not `cat`: it is `chelsea`)
PHOTOGRAPHS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "clock", "coins", "hubble_deep_field",
               "immunohistochemistry", "moon", "retina", "text", "brick", "grass", "gravel", "page")


def photographs(count: int) -> list[tuple[str, np.ndarray]]:
    """`count` (name, uint8 RGB pixels at their own size) of PHOTOGRAPHS, then their mirror images where more are
    asked for."""
    import skimage.data

    found = []
    for name in PHOTOGRAPHS:
        pixels = getattr(skimage.data, name)()
        found.append((name, np.repeat(pixels[..., None], 3, axis=2) if pixels.ndim == 2 else pixels[..., :3]))
    found += [(f"{name}-mirrored", np.ascontiguousarray(pixels[:, ::-1])) for name, pixels in found]
    if count > len(found):
        raise ValueError(f"at most {len(found)} photographs, {count} asked for")
    return found[:count]


def calibration_images(side: int) -> np.ndarray:
    """The photographs and their mirror images at side x side, RGB 0..255: what the stand-ins' statistics are
    measured on."""
    from core.images import resize

    return np.stack([resize(pixels, side, side) for _, pixels in photographs(CALIBRATION_IMAGES)]).astype(np.float32)

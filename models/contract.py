"""A model's input contract: the pixel value range it wants, the keras.applications preprocessing it
expects, and whether it outputs probabilities or logits.

Decided once per run, from the options, the metadata file beside the model, and the model's own config
(read as JSON, so no TensorFlow here), and stored with the run. Every part says how it was decided.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from models.artifacts import KerasFileSummary, ModelMetadata

# The --preprocess names: a fixed list, each mapped to keras.applications.<module>.preprocess_input (never
# arbitrary code). Every one of them takes RGB pixels in 0..255.
PREPROCESS_FAMILIES = {
    "mobilenet": "mobilenet",
    "mobilenet_v2": "mobilenet_v2",
    "mobilenet_v3": "mobilenet_v3",
    "resnet50": "resnet50",
    "resnet": "resnet",
    "resnet_v2": "resnet_v2",
    "vgg16": "vgg16",
    "vgg19": "vgg19",
    "inception_v3": "inception_v3",
    "xception": "xception",
    "densenet": "densenet",
    "efficientnet": "efficientnet",
    "efficientnet_v2": "efficientnet_v2",
    "convnext": "convnext",
}
# What computes a run's predictions (models.runtimes): auto, the faster of OpenVINO and Keras where OpenVINO reproduces
# Keras on the run's images; keras; or openvino, where it reproduces Keras (else Keras, saying why).
RUNTIMES = ("auto", "keras", "openvino")
PIXEL_RANGE = (0.0, 255.0)
DEFAULT_RANGE = (0.0, 1.0)
OUTPUT_KINDS = ("probabilities", "logits")


class ContractError(ValueError):
    """An option of the input contract that cannot be used as given; the message is one line."""


@dataclass
class InputContract:
    value_range: tuple[float, float]
    preprocess: str | None = None
    outputs: str = "probabilities"
    notes: list[str] = field(default_factory=list)  # how each part was decided, for the user

    def describe(self) -> str:
        """One line: `pixels 0..255, preprocess mobilenet_v2, outputs probabilities`."""
        parts = [f"pixels {format_range(self.value_range)}"]
        if self.preprocess:
            parts.append(f"preprocess {self.preprocess}")
        parts.append(f"outputs {self.outputs}")
        return ", ".join(parts)


def format_range(value_range) -> str:
    return "..".join(f"{value:g}" for value in value_range)


def parse_value_range(text: str) -> tuple[float, float]:
    """`LOW,HIGH` (e.g. `0,255`) as two finite floats with LOW < HIGH."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise ContractError(f"--value-range wants LOW,HIGH such as 0,255 or 0,1; got {text!r}") from None
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise ContractError(f"--value-range wants finite LOW < HIGH; got {text!r}")
    return low, high


def check_preprocess(name: str) -> str:
    if name not in PREPROCESS_FAMILIES:
        raise ContractError(f"unknown --preprocess {name!r}; choose one of {', '.join(PREPROCESS_FAMILIES)}")
    return name


def inferred_value_range(summary: KerasFileSummary) -> tuple[tuple[float, float], str] | None:
    """0..255 when the first layer to touch the pixels is Rescaling(1/255) or Rescaling(1/127.5, -1)."""
    if summary.rescaling is None:
        return None
    scale, offset = summary.rescaling
    if abs(scale * 255 - 1) < 0.01 or abs(scale * 127.5 - 1) < 0.01:
        return PIXEL_RANGE, f"inferred from the model's first layer, Rescaling(scale={scale:.6g}, offset={offset:g})"
    return None


def inferred_outputs(summary: KerasFileSummary) -> tuple[str, str]:
    activation = summary.output_activation
    if activation == "linear":
        return "logits", "the last layer has no activation: its outputs are logits, turned into probabilities"
    if activation in ("softmax", "sigmoid"):
        return "probabilities", f"the last layer's activation is {activation}"
    return "probabilities", "assumed (the model's config does not say plainly)"


def decide_contract(
    summary: KerasFileSummary,
    metadata: ModelMetadata | None,
    *,
    value_range: tuple[float, float] | None = None,
    preprocess: str | None = None,
    outputs: str | None = None,
) -> InputContract:
    """The contract for a run: options first, then the metadata file, then the model's config, then defaults."""
    notes = []
    if preprocess is not None:
        preprocess = check_preprocess(preprocess)
        notes.append(f"preprocess {preprocess}: from --preprocess")
    elif metadata is not None and metadata.preprocess:
        preprocess = check_preprocess(metadata.preprocess)
        notes.append(f"preprocess {preprocess}: from the metadata file")

    inferred = inferred_value_range(summary)
    if value_range is not None:
        source = "from --value-range"
    elif metadata is not None and metadata.value_range is not None:
        value_range, source = tuple(metadata.value_range), "from the metadata file"
    elif inferred is not None:
        value_range, source = inferred
    elif preprocess is not None:
        value_range, source = PIXEL_RANGE, f"what keras.applications' {preprocess} preprocessing takes"
    else:
        value_range, source = DEFAULT_RANGE, "the default (nothing in the model says otherwise; --value-range changes it)"
    notes.append(f"pixels {format_range(value_range)}: {source}")

    if outputs is not None:
        source = "from --outputs"
    elif metadata is not None and metadata.outputs:
        outputs, source = metadata.outputs, "from the metadata file"
    else:
        outputs, source = inferred_outputs(summary)
    if outputs not in OUTPUT_KINDS:
        raise ContractError(f"outputs must be one of {', '.join(OUTPUT_KINDS)}, got {outputs!r}")
    notes.append(f"outputs {outputs}: {source}")
    return InputContract((float(value_range[0]), float(value_range[1])), preprocess, outputs, notes)

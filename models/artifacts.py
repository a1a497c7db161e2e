"""A trained model's metadata, kept in a JSON file beside its `.keras` file (no TensorFlow needed here)."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass
class ModelMetadata:
    """What a worker needs besides the weights: class names, input shape, the input contract (value range,
    preprocessing, what the outputs are); and where the model came from.

    `value_range` None means "not said": the producer infers it from the model, or falls back to [0, 1].
    """

    class_names: list[str]
    input_shape: list[int]
    value_range: list[float] | None = None
    preprocess: str | None = None  # a keras.applications family, see models.contract.PREPROCESS_FAMILIES
    outputs: str | None = None  # "probabilities" | "logits"; None: inferred from the last layer
    dataset: str | None = None
    preset: str | None = None
    seed: int | None = None
    images: int | None = None
    val_fraction: float | None = None
    split_seed: int | None = None
    val_size: int | None = None
    val_errors: int | None = None
    val_accuracy: float | None = None
    sha256: str | None = None
    # The trained weights alone: the same for the same seed, while the file's sha256 is not (Keras writes the save
    # time and Python object ids into the archive). Set by `models train`.
    weights_sha256: str | None = None

    @classmethod
    def from_dict(cls, data: dict) -> "ModelMetadata":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def weights_sha256(weights: list[np.ndarray]) -> str:
    """One sha256 over a model's weight arrays (`model.get_weights()`: shapes, types and values, in order)."""
    digest = hashlib.sha256()
    for array in weights:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def default_model_path(dataset: str) -> Path:
    """Where a built-in data set's demo model lives unless told otherwise: DATA_DIR/models/<dataset>.keras."""
    from core.settings import settings

    return settings.model_dir / f"{dataset}.keras"


def metadata_path(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".json")


def write_metadata(model_path: str | Path, metadata: ModelMetadata) -> Path:
    """Written whole or not at all: a worker's other processes may read it while this one writes (model cache)."""
    path = metadata_path(model_path)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(asdict(metadata), indent=2) + "\n")
    os.replace(partial, path)
    return path


def read_metadata(model_path: str | Path) -> ModelMetadata | None:
    """The metadata beside a model file, or None for a user's model that has none."""
    path = metadata_path(model_path)
    if not path.exists():
        return None
    return ModelMetadata.from_dict(json.loads(path.read_text()))


class ClassNamesError(ValueError):
    """A class names file that cannot be used; the message is one line."""


def read_class_names(path: str | Path) -> list[str]:
    """A model's class names in output order from a file: one per line (ImageNet's LOC_synset_mapping.txt is one,
    `n01440764 tench, Tinca tinca`), a JSON list, or a JSON object of output index to a name or a list of names
    (Keras' imagenet_class_index.json: `{"0": ["n01440764", "tench"]}`, joined by a space). Distinct and not empty."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ClassNamesError(f"cannot read class names from {path}: {error}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
            if isinstance(data, dict):
                data = [data[key] for key in sorted(data, key=int)]
            names = [" ".join(name) if isinstance(name, list) else name for name in data]
        except (json.JSONDecodeError, ValueError, TypeError) as error:
            raise ClassNamesError(f"{path.name}: want a JSON list of names or an object of index to name ({error})") from None
        if not all(isinstance(name, str) for name in names):
            raise ClassNamesError(f"{path.name}: every class name must be text")
    else:
        names = [line for line in text.splitlines() if line.strip()]
    names = [name.strip() for name in names]
    if not names or not all(names):
        raise ClassNamesError(f"{path.name} holds no class names (or an empty one)")
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        raise ClassNamesError(f"{path.name}: class names must be distinct; repeated: {', '.join(repeated[:5])}")
    return names


@dataclass
class KerasFileSummary:
    input_shape: list[int] | None
    outputs: int | None
    has_lambda: bool
    # (scale, offset) of a Rescaling layer that is the first layer to act on the pixels at inference
    rescaling: tuple[float, float] | None = None
    # the last layer's activation ("softmax", "sigmoid", "linear", ...), None where the config hides it
    output_activation: str | None = None


# Layers that leave the pixels alone at inference: inputs, and the random augmentations of the Keras
# tutorials (active only in training).
_PASS_THROUGH = ("InputLayer", "Sequential", "Functional", "Model")


class ModelFileError(ValueError):
    """A file that is not a readable Keras 3 (`.keras`) model archive."""


def summarise_keras_file(path: str | Path) -> KerasFileSummary:
    """Read a `.keras` archive's config without TensorFlow: input shape, output units, Lambda layers.

    For the producer, which must refuse a bad model before anything is stored and must stay fast
    to start. Input shape and outputs are None where the config does not say them plainly.
    """
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError) as error:
        raise ModelFileError(f"{path.name} is not a Keras 3 .keras model archive ({error})") from None

    layers: list[dict] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            if "class_name" in node and isinstance(node.get("config"), dict):
                layers.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    input_shape = None
    for layer in layers:
        shape = layer["config"].get("batch_shape") or layer["config"].get("batch_input_shape")
        if layer["class_name"] == "InputLayer" and shape:
            input_shape = list(shape[1:])
            break
    if input_shape is None and isinstance(config.get("build_config"), dict):
        shape = config["build_config"].get("input_shape")
        input_shape = list(shape[1:]) if shape else None
    dense = [layer for layer in layers if "units" in layer["config"]]
    outputs = dense[-1]["config"]["units"] if dense else None
    model_layers = [layer for layer in layers if layer.get("module") in ("keras.layers", "keras") and
                    layer["class_name"] != "DTypePolicy"]
    return KerasFileSummary(
        input_shape, outputs, any(layer["class_name"] == "Lambda" for layer in layers),
        _first_rescaling(model_layers), _output_activation(model_layers),
    )


def _first_rescaling(layers: list[dict]) -> tuple[float, float] | None:
    for layer in layers:
        kind = layer["class_name"]
        if kind in _PASS_THROUGH or kind.startswith("Random"):
            continue
        if kind == "Rescaling":
            scale, offset = layer["config"].get("scale"), layer["config"].get("offset", 0.0)
            if isinstance(scale, (int, float)) and isinstance(offset, (int, float)):
                return float(scale), float(offset)
        return None
    return None


def _output_activation(layers: list[dict]) -> str | None:
    """The activation of the last layer that has one (a Softmax layer counts as "softmax")."""
    for layer in reversed(layers):
        kind, config = layer["class_name"], layer["config"]
        if kind == "Softmax":
            return "softmax"
        activation = config.get("activation")
        if isinstance(activation, str):
            return activation
        if kind not in ("Flatten", "Reshape", "Dropout", "Identity") + _PASS_THROUGH:
            return None
    return None


@dataclass
class ModelFile:
    """A model file read once: its bytes and their sha256, its config, its metadata (or defaults)."""

    path: Path
    content: bytes
    sha256: str
    summary: KerasFileSummary
    metadata: ModelMetadata


def inspect_model_file(path: str | Path) -> ModelFile:
    """One reading of a `.keras` file for the producer and the workers alike, with no TensorFlow: the bytes and
    their sha256 (read once), the config, and the metadata file checked against the bytes, or, for a user's model
    without one, defaults: class names "0".."k-1" and the config's input shape. Raises ModelFileError."""
    path = Path(path)
    summary = summarise_keras_file(path)
    content = path.read_bytes()
    sha256 = hashlib.sha256(content).hexdigest()
    metadata = read_metadata(path)
    if metadata is not None and metadata.sha256 and metadata.sha256 != sha256:
        raise ModelFileError(
            f"{path.name} does not match its metadata (sha256 differs): the file was replaced; "
            f"python -m models describe {path} writes it anew"
        )
    if metadata is None:
        shape = summary.input_shape
        if shape is None:
            raise ModelFileError(
                f"{path.name}: cannot tell its image input shape; add a metadata .json beside it (python -m models describe)"
            )
        if len(shape) != 3 or None in shape:
            raise ModelFileError(f"{path.name} takes inputs of shape {tuple(shape)}; an image model wants (H, W, C)")
        classes = max(2, summary.outputs or 2)
        metadata = ModelMetadata(class_names=[str(i) for i in range(classes)], input_shape=list(shape))
    metadata.sha256 = sha256
    return ModelFile(path, content, sha256, summary, metadata)

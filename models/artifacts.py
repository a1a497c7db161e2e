"""A trained model's metadata, kept in a JSON file beside its `.keras` file (no TensorFlow needed here)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class ModelMetadata:
    """What a worker needs besides the weights: class names, input shape, value range; and where it came from."""

    class_names: list[str]
    input_shape: list[int]
    value_range: list[float] = field(default_factory=lambda: [0.0, 1.0])
    preprocessing: str = "RGB float32, pixel values scaled to the value range"
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

    @classmethod
    def from_dict(cls, data: dict) -> "ModelMetadata":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def metadata_path(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".json")


def write_metadata(model_path: str | Path, metadata: ModelMetadata) -> Path:
    path = metadata_path(model_path)
    path.write_text(json.dumps(asdict(metadata), indent=2) + "\n")
    return path


def read_metadata(model_path: str | Path) -> ModelMetadata | None:
    """The metadata beside a model file, or None for a user's model that has none."""
    path = metadata_path(model_path)
    if not path.exists():
        return None
    return ModelMetadata.from_dict(json.loads(path.read_text()))


@dataclass
class KerasFileSummary:
    input_shape: list[int] | None
    outputs: int | None
    has_lambda: bool


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
    return KerasFileSummary(input_shape, outputs, any(layer["class_name"] == "Lambda" for layer in layers))

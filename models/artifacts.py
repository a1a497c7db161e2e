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

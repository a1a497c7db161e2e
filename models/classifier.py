"""Load a user's `.keras` model safely and wrap it as the one contract the engine, the input check and the
benchmarks call: float32 images (n, H, W, C) in the run's value range -> probabilities (n, classes), whatever runtime
computes them (Keras/TensorFlow here, OpenVINO through models.runtimes).

This module and models.runtimes are the only ones that import TensorFlow; import them in the process that will run
the model (a worker's child process, never its parent: TensorFlow hangs after fork).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from models.artifacts import ModelFileError, ModelMetadata, inspect_model_file
from models.batching import batch_buckets, batch_for
from models.outputs import class_columns

# TensorFlow's oneDNN kernels, which it leaves off on CPUs without AVX-512: on (where not set otherwise) before
# TensorFlow is first imported (docs/settings.md: measured faster on both kinds of CPU here).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


class ModelLoadError(ValueError):
    """The model file cannot be used: missing, unreadable, unsafe, or of a shape we cannot explain."""


class UnsafeModelError(ModelLoadError):
    """The model holds code (a Lambda layer) that Keras' safe mode refuses to deserialise."""


def configure_tensorflow(threads: int) -> None:
    """Pin TensorFlow to `threads` CPU threads; call before the first model is built or loaded."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        # TensorFlow's runtime is already up; its thread pools can no longer change.
        if tf.config.threading.get_intra_op_parallelism_threads() != threads:
            raise


def preprocess_function(name: str | None):
    """keras.applications' own preprocess_input of a family in models.contract.PREPROCESS_FAMILIES, or None."""
    if name is None:
        return None
    import importlib

    from models.contract import PREPROCESS_FAMILIES, check_preprocess

    module = importlib.import_module(f"keras.applications.{PREPROCESS_FAMILIES[check_preprocess(name)]}")
    return module.preprocess_input


def device_kind() -> str:
    """"gpu" where TensorFlow sees a GPU (it then runs the model there), else "cpu"."""
    import tensorflow as tf

    return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"


class Runtime(Protocol):
    """What computes a model's raw outputs (n, outputs) for one batch of float32 images: Keras here, OpenVINO in
    models.runtimes."""

    name: str

    def outputs(self, batch: np.ndarray) -> np.ndarray: ...


class KerasRuntime:
    """The model's compiled TensorFlow function: the reference every other runtime is checked against."""

    name = "keras"

    def __init__(self, classifier: "Classifier"):
        import tensorflow as tf

        # One trace serves every batch size (each new shape would otherwise cost a retrace per process); batches
        # still come in a few fixed sizes (padded up to the next bucket) so oneDNN reuses its kernels.
        signature = tf.TensorSpec([None, *classifier.input_shape], tf.float32)
        self._compiled = tf.function(classifier.forward, input_signature=[signature])
        self.buckets = batch_buckets(classifier.batch_size)

    def outputs(self, batch: np.ndarray) -> np.ndarray:
        bucket = next(size for size in self.buckets if size >= len(batch))
        if bucket > len(batch):
            padding = np.zeros((bucket - len(batch), *batch.shape[1:]), dtype=np.float32)
            batch = np.concatenate([batch, padding])
        return np.asarray(self._compiled(batch))


@dataclass
class Classifier:
    """A loaded model: `predict` maps float32 images (n, H, W, C) in the run's value range to probabilities
    (n, classes). `preprocess` (a keras.applications family) runs on the images first; `logits` says the model's
    outputs still need a softmax (a sigmoid for a single output). `runtime` computes them: Keras unless
    models.runtimes chose another, `choice` says which and why."""

    model: object
    metadata: ModelMetadata
    sha256: str
    batch_size: int = 0  # images per call; 0: models.batching's rule for this input shape on this device
    preprocess: str | None = None
    logits: bool = False
    keras: KerasRuntime = field(init=False, repr=False)
    runtime: Runtime = field(init=False, repr=False)
    choice: object = None  # models.runtimes.RuntimeChoice, once one was made

    def __post_init__(self) -> None:
        if not self.batch_size:
            self.batch_size = batch_for(self.input_shape, device_kind())
        self._prepare = preprocess_function(self.preprocess)  # imported here, not while a graph is traced
        self.keras = self.runtime = KerasRuntime(self)

    def forward(self, x):
        """The graph every runtime computes: the preprocessing, the model, and the softmax (or sigmoid) of logits."""
        import tensorflow as tf

        output = self.model(self._prepare(x) if self._prepare else x, training=False)
        if self.logits:
            output = tf.sigmoid(output) if output.shape[-1] == 1 else tf.nn.softmax(output, axis=-1)
        return output

    def served_by(self, runtime: Runtime, choice) -> "Classifier":
        """This model predicted through `runtime` (the Keras model and its compiled function shared, not copied)."""
        served = copy.copy(self)
        served.runtime, served.choice = runtime, choice
        return served

    def warm_up(self) -> None:
        """Feed the runtime one batch of the size most calls take, before the first real image (the others are made
        as they come: warming every size would cost a big model more than it saves)."""
        self.runtime.outputs(np.zeros((self.batch_size, *self.input_shape), np.float32))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.metadata.input_shape)  # type: ignore[return-value]

    @property
    def class_names(self) -> list[str]:
        return self.metadata.class_names

    def predict(self, images: np.ndarray, runtime: Runtime | None = None) -> np.ndarray:
        """Probabilities per image through this classifier's runtime (or the one given); a single sigmoid output
        comes back as [p(class 0), p(class 1)]. Images go in batches of at most `batch_size`."""
        runtime = runtime or self.runtime
        images = np.asarray(images, dtype=np.float32)
        chunks = (np.ascontiguousarray(images[start : start + self.batch_size])
                  for start in range(0, len(images), self.batch_size))
        return class_columns(np.concatenate([runtime.outputs(chunk)[: len(chunk)] for chunk in chunks]))


def load_classifier(
    path: str | Path, *, batch_size: int = 0, preprocess: str | None = None, logits: bool = False
) -> Classifier:
    """Load a `.keras` model with Keras' safe mode on, check its shapes, and attach its metadata.

    A model without a metadata file gets class names "0".."k-1". The input contract (value range,
    preprocessing, logits) is the run's: see models.contract.
    """
    path = Path(path)
    try:
        found = inspect_model_file(path)
    except ModelFileError as error:
        raise ModelLoadError(str(error)) from None
    import keras

    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except ValueError as error:
        if "safe_mode" in str(error) or "Lambda" in str(error):
            raise UnsafeModelError(
                f"{path.name} holds a Lambda layer (arbitrary Python code); refused, nothing was executed"
            ) from None
        raise ModelLoadError(f"cannot read {path.name} as a Keras model: {error}") from None
    except Exception as error:  # corrupt archives raise zipfile, h5py or OS errors
        raise ModelLoadError(f"cannot read {path.name} as a Keras model: {type(error).__name__}: {error}") from None

    input_shape = tuple(model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else ()
    if len(input_shape) != 3 or None in input_shape:
        raise ModelLoadError(f"{path.name} takes inputs of shape {input_shape}; an image model wants (H, W, C)")
    output_shape = tuple(model.outputs[0].shape[1:])
    if len(output_shape) != 1:
        raise ModelLoadError(f"{path.name} outputs shape {output_shape}; a classifier outputs one vector per image")
    if tuple(found.metadata.input_shape) != input_shape:
        raise ModelLoadError(
            f"{path.name} takes {input_shape} but its metadata says {tuple(found.metadata.input_shape)}"
        )
    return Classifier(model, found.metadata, found.sha256, batch_size, preprocess, logits)

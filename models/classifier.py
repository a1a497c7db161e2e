"""Load a user's `.keras` model safely and wrap it as a fast predict function for the engine.

This is the only module that imports TensorFlow; import it in the process that will run the model
(a worker's child process, never its parent: TensorFlow hangs after fork).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.artifacts import ModelFileError, ModelMetadata, inspect_model_file
from models.outputs import class_columns

SMALLEST_BUCKET = 16


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


def batch_buckets(batch_size: int) -> list[int]:
    """Batch sizes the compiled function is traced for: powers of two up to `batch_size`, and itself."""
    sizes, size = [], SMALLEST_BUCKET
    while size < batch_size:
        sizes.append(size)
        size *= 2
    return sizes + [batch_size]


def preprocess_function(name: str | None):
    """keras.applications' own preprocess_input of a family in models.contract.PREPROCESS_FAMILIES, or None."""
    if name is None:
        return None
    import importlib

    from models.contract import PREPROCESS_FAMILIES, check_preprocess

    module = importlib.import_module(f"keras.applications.{PREPROCESS_FAMILIES[check_preprocess(name)]}")
    return module.preprocess_input


@dataclass
class Classifier:
    """A loaded model: `predict` maps float32 images (n, H, W, C) in the run's value range to probabilities
    (n, classes). `preprocess` (a keras.applications family) runs on the images first; `logits` says the
    model's outputs still need a softmax (a sigmoid for a single output)."""

    model: object
    metadata: ModelMetadata
    sha256: str
    batch_size: int = 256
    preprocess: str | None = None
    logits: bool = False

    def __post_init__(self) -> None:
        import tensorflow as tf

        model, logits = self.model, self.logits
        prepare = preprocess_function(self.preprocess) or (lambda x: x)

        def forward(x):
            output = model(prepare(x), training=False)
            if logits:
                output = tf.sigmoid(output) if output.shape[-1] == 1 else tf.nn.softmax(output, axis=-1)
            return output

        # One trace serves every batch size (each new shape would otherwise cost a retrace per
        # process); batches still come in a few fixed sizes so oneDNN reuses its kernels.
        signature = tf.TensorSpec([None, *self.input_shape], tf.float32)
        self._forward = tf.function(forward, input_signature=[signature])
        self._buckets = batch_buckets(self.batch_size)

    def warm_up(self) -> None:
        """Trace the compiled function and touch every batch size once, before the first real image."""
        for size in self._buckets:
            self._forward(np.zeros((size, *self.input_shape), np.float32))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.metadata.input_shape)  # type: ignore[return-value]

    @property
    def class_names(self) -> list[str]:
        return self.metadata.class_names

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Probabilities per image; a single sigmoid output comes back as [p(class 0), p(class 1)].

        Images go to the compiled function in fixed-size batches (padded up to the next bucket) so it
        is traced a handful of times, not once per odd batch length.
        """
        images = np.asarray(images, dtype=np.float32)
        outputs = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            bucket = next(size for size in self._buckets if size >= len(chunk))
            if bucket > len(chunk):
                padding = np.zeros((bucket - len(chunk), *chunk.shape[1:]), dtype=np.float32)
                chunk = np.concatenate([chunk, padding])
            outputs.append(np.asarray(self._forward(chunk))[: min(self.batch_size, len(images) - start)])
        return class_columns(np.concatenate(outputs))


def load_classifier(
    path: str | Path, *, batch_size: int = 256, preprocess: str | None = None, logits: bool = False
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

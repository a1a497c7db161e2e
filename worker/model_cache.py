"""Each worker process's models, fetched from the database once by sha256 and kept on local disk, each served by the
runtime its runs ask for (models.runtimes), chosen once per process.

A worker on another machine needs nothing but the broker and database URLs.
"""

from __future__ import annotations

import logging
import os
from typing import Callable

import numpy as np
from sqlalchemy.orm import Session

from core.settings import settings
from db.models import ModelFile
from models.artifacts import ModelMetadata, file_sha256, write_metadata
from models.classifier import Classifier, ModelLoadError, load_classifier
from models.runtimes import choose_runtime

logger = logging.getLogger(__name__)

_loaded: dict[tuple[str, str | None, bool], Classifier] = {}
_served: dict[tuple[str, str | None, bool, str], Classifier] = {}


def classifier_for(
    session: Session, sha256: str, *, preprocess: str | None = None, outputs: str = "probabilities",
    runtime: str = "keras", check_images: Callable[[Classifier], np.ndarray] | None = None,
) -> Classifier:
    """The model with this sha256, fed as a run's contract says (keras.applications preprocessing, probabilities
    or logits), loaded once per process (the run's stored copy, never the user's path), and served by the runtime
    `runtime` asks for: the first time in this process, models.runtimes.choose_runtime checks (and for auto, times)
    OpenVINO against Keras on `check_images(classifier)` (float32 images in the run's value range). Its choice, as
    `.choice`, holds for every later run of the same model and runtime in this process."""
    logits = outputs == "logits"
    key = (sha256, preprocess, logits, runtime)
    if key in _served:
        return _served[key]
    classifier = _keras_classifier(session, sha256, preprocess, logits)
    images = check_images(classifier) if runtime != "keras" else np.empty((0, *classifier.input_shape), np.float32)
    served = choose_runtime(classifier, runtime, images, cache_dir=settings.openvino_cache_dir,
                            threads=settings.threads_per_process())
    logger.info("model %s: %s", sha256[:12], served.choice.line)
    served.warm_up()
    _served[key] = served
    return served


def _keras_classifier(session: Session, sha256: str, preprocess: str | None, logits: bool) -> Classifier:
    key = (sha256, preprocess, logits)
    if key in _loaded:
        return _loaded[key]
    cache = settings.model_cache_dir
    path = cache / f"{sha256}.keras"
    if not path.exists() or file_sha256(path) != sha256:
        stored = session.get(ModelFile, sha256)
        if stored is None:
            raise ModelLoadError(f"model {sha256[:12]} is not in the database")
        cache.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        partial.write_bytes(stored.content)
        write_metadata(path, ModelMetadata.from_dict({**stored.model_metadata, "sha256": sha256}))
        os.replace(partial, path)  # atomic: other processes never see half a file
    _loaded[key] = load_classifier(path, preprocess=preprocess, logits=logits)
    return _loaded[key]

"""Each worker process's models, fetched from the database once by sha256 and kept on local disk.

A worker on another machine needs nothing but the broker and database URLs.
"""

from __future__ import annotations

import os

from sqlalchemy.orm import Session

from core.settings import settings
from db.models import ModelFile
from models.artifacts import ModelMetadata, file_sha256, write_metadata
from models.classifier import Classifier, ModelLoadError, load_classifier

_loaded: dict[tuple[str, str | None, bool], Classifier] = {}


def classifier_for(
    session: Session, sha256: str, *, preprocess: str | None = None, outputs: str = "probabilities"
) -> Classifier:
    """The model with this sha256, fed as a run's contract says (keras.applications preprocessing, probabilities
    or logits), loaded once per process (the run's stored copy, never the user's path)."""
    logits = outputs == "logits"
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
    classifier = load_classifier(path, preprocess=preprocess, logits=logits)
    classifier.warm_up()
    _loaded[key] = classifier
    return classifier

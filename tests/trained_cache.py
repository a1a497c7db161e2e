"""Trained models kept across test runs. Training is deterministic (models.cnn.train fixes the seed and the ops), so
a model made by the same code, settings and library versions is the same model: the suite keeps each in a cache
folder keyed by a hash of all three, and trains again only when one of them changes (any edit under the code's
folders, a comment included, misses). LIMEBATCH_TEST_CACHE moves the cache; an empty value turns it off."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from importlib.metadata import version
from pathlib import Path
from typing import Callable, Iterable

from tests.services import REPO

CACHE = os.environ.get("LIMEBATCH_TEST_CACHE", str(Path.home() / ".cache" / "limebatch-tests"))
# what trains the demo models and the tutorial model: the data sets, the CNN and its recipes, metadata, images
TRAINING_CODE = (REPO / "models", REPO / "core", REPO / "tests" / "tutorial.py")
LIBRARIES = ("tensorflow", "keras", "numpy", "scikit-image", "scikit-learn")


def training_key(settings: object, code: Iterable[Path] = TRAINING_CODE) -> str:
    """A hash of the settings (JSON-able), the library versions and every Python file under `code`."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for library in LIBRARIES:
        digest.update(f"{library}=={version(library)}\n".encode())
    for root in code:
        files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
        for file in files:
            digest.update(f"{file.relative_to(root.parent)}\n".encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:20]


def from_cache(name: str, key: str, make: Callable[[Path], object], folder: Path, cache: str | None = None) -> bool:
    """Fill `folder` with what make(folder) makes: a copy of the cached one when the key is kept (True), else made
    now and then kept under the key, replacing the name's older entries (False)."""
    root = CACHE if cache is None else cache
    if not root:
        make(folder)
        return False
    entry = Path(root) / f"{name}-{key}"
    if entry.is_dir():
        shutil.copytree(entry, folder, dirs_exist_ok=True)
        return True
    make(folder)
    staging = Path(root) / f".{name}-{key}.{os.getpid()}"
    shutil.copytree(folder, staging)
    try:
        staging.rename(entry)  # whole or not at all: another run may be filling the same entry
    except OSError:
        shutil.rmtree(staging)
    for older in Path(root).glob(f"{name}-{'?' * len(key)}"):  # this name's alone: not "shapes-seed" for "shapes"
        if older != entry:
            shutil.rmtree(older, ignore_errors=True)
    return False

"""Where a run's images come from: a built-in data set's validation split, a class-per-folder tree, or an .npz.

A source is a list of entries (what it takes to read an image again: a file's path, an index), never of pixels. The
producer reads every image twice: once to check it (all bad ones are listed before anything is stored), keeping no
pixels, and once to store it, a chunk at a time; so its memory does not grow with the number of images (the entries
themselves take about a hundred bytes each). A source that cannot be used at all is refused with a one-line
SourceError before anything is stored.
"""

from __future__ import annotations

import heapq
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from core import images
from models.artifacts import ModelMetadata
from models.datasets import load_dataset
from worker.input_check import sample_positions

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MAX_NPZ_BYTES = 4 * 2**30  # an .npz whose X claims more is refused from its header, before decompressing


class SourceError(ValueError):
    """A source that cannot be used as given; the message is one line, for the user."""


@dataclass
class Entry:
    """One image of a source, not read: its key (a file's path inside the folder, or an index), its true label."""

    key: str | int
    true_label: int | None


@dataclass
class Rejected:
    """An image of the source that cannot be explained, and why (one line)."""

    source: str
    reason: str

    def as_dict(self) -> dict:
        return {"source": self.source, "reason": self.reason}


@dataclass
class Read:
    """One image as read: its pixels (uint8 (H, W, C)) or why they cannot be had, and the file's own bytes when they
    are already the PNG the project stores for these pixels."""

    entry: Entry
    pixels: np.ndarray | None = None
    error: str | None = None
    png: bytes | None = None


@dataclass
class Source:
    description: str
    entries: list[Entry]
    class_names: list[str] | None = None  # the names the labels stand for (folder names, an .npz's class_names)
    ignored: list[str] = field(default_factory=list)  # what was skipped on purpose, and why
    label_span: int | None = None  # labels without names (an .npz's y): they take values 0 .. label_span - 1

    def name(self, entry: Entry) -> str:
        """How messages name an image."""
        raise NotImplementedError

    def origin(self, entry: Entry) -> str:
        """Where an image came from, as stored with it."""
        raise NotImplementedError

    def path(self, entry: Entry) -> Path | None:
        """The image's own file, when it has one (what `--images reference` stores)."""
        return None

    def read(self, entries: Iterable[Entry]) -> Iterator[Read]:
        """The images, read one at a time, in the order given."""
        raise NotImplementedError


@dataclass
class BuiltinSource(Source):
    array: np.ndarray | None = None  # the validation split's images (a built-in set is small and fixed)
    dataset: str = ""
    masks: np.ndarray | None = None  # each image's known evidence, for the sets that have one

    def name(self, entry: Entry) -> str:
        return f"{self.dataset}[{entry.key}]"

    def origin(self, entry: Entry) -> str:
        return f"{self.dataset}:validation/{entry.key}"

    def read(self, entries: Iterable[Entry]) -> Iterator[Read]:
        for entry in entries:
            yield _converted(entry, self.array[entry.key], self.name(entry))


@dataclass
class FolderSource(Source):
    folder: Path = Path()

    def name(self, entry: Entry) -> str:
        return str(entry.key)

    def origin(self, entry: Entry) -> str:
        return str(self.folder / entry.key)

    def path(self, entry: Entry) -> Path:
        return (self.folder / entry.key).resolve()

    def read(self, entries: Iterable[Entry]) -> Iterator[Read]:
        for entry in entries:
            yield read_file(entry, self.folder / entry.key, self.name(entry))


@dataclass
class NpzSource(Source):
    file: Path = Path()
    shape: tuple[int, ...] = ()
    dtype: np.dtype | None = None
    fortran_order: bool = False

    def name(self, entry: Entry) -> str:
        return f"{self.file.name}[{entry.key}]"

    def origin(self, entry: Entry) -> str:
        return f"{self.file}[{entry.key}]"

    def read(self, entries: Iterable[Entry]) -> Iterator[Read]:
        """Row by row from the archive (seeking within X's member), never the whole array, unless X was saved in
        Fortran order (rows are not contiguous there: the array is loaded whole)."""
        if self.fortran_order:
            with np.load(self.file, allow_pickle=False) as arrays:
                whole = arrays["X"]
            for entry in entries:
                yield _converted(entry, whole[entry.key], self.name(entry))
            return
        row_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        with zipfile.ZipFile(self.file) as archive:
            with archive.open("X.npy") as stream:
                _read_npy_header(stream)
                start = stream.tell()
                for entry in entries:
                    stream.seek(start + entry.key * row_bytes)
                    row = np.frombuffer(stream.read(row_bytes), dtype=self.dtype).reshape(self.shape[1:])
                    yield _converted(entry, row, self.name(entry))


def _converted(entry: Entry, array: np.ndarray, name: str) -> Read:
    try:
        return Read(entry, images.to_uint8(array, name))
    except images.PixelError as error:
        return Read(entry, error=str(error))


def read_file(entry: Entry, path: Path, name: str) -> Read:
    try:
        data = path.read_bytes()
    except OSError as error:
        return Read(entry, error=f"{name}: cannot be read ({type(error).__name__}: {error})")
    try:
        pixels, is_png = images.decode_file(data, name)
    except images.PixelError as error:
        return Read(entry, error=str(error))
    return Read(entry, pixels, png=data if is_png else None)


def from_builtin(name: str, metadata: ModelMetadata | None, limit: int | None) -> BuiltinSource:
    """The validation split of a built-in data set, the same split the model was trained against."""
    if metadata is not None and metadata.dataset == name:
        data = load_dataset(
            name, images=metadata.images, val_fraction=metadata.val_fraction or 0.2, seed=metadata.seed or 0,
            split_seed=metadata.split_seed if metadata.split_seed is not None else 42,
        )
    else:
        data = load_dataset(name)
    count = len(data.y_val) if limit is None else min(limit, len(data.y_val))
    entries = [Entry(i, int(data.y_val[i])) for i in range(count)]
    return BuiltinSource(f"{name} validation split", entries, list(data.class_names), array=data.x_val, dataset=name,
                         masks=data.val_masks)


def classes_in_turn(labels: np.ndarray, limit: int) -> np.ndarray:
    """The positions of up to `limit` labels, taking the classes in turn (each class's first positions first), in
    position order: what `--limit` takes, so that a source sorted by class still gives every class its share."""
    order = np.argsort(labels, kind="stable")  # grouped by class, each class in position order
    _, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
    # no class gives more than `limit`: the choice is among at most classes x limit positions, whatever the source holds
    candidates = np.concatenate([order[start : start + min(count, limit)] for start, count in zip(starts, counts)])
    picked = sample_positions(labels[candidates].tolist(), limit)
    return np.sort(candidates[picked])


def from_folder(folder: Path, limit: int | None) -> FolderSource:
    """One sub-folder per class (Keras' image_dataset_from_directory convention), PNG and JPEG files, listed (not
    read) in sorted order; with `limit`, that many taken from the classes in turn."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(f"folder not found: {folder}")
    root = folder.resolve()
    ignored: list[str] = []

    def inside(item: os.DirEntry) -> bool:
        """Symbolic links that lead out of the folder are ignored, never followed."""
        if not item.is_symlink() or Path(item.path).resolve().is_relative_to(root):
            return True
        ignored.append(f"{item.path} (a link outside {folder})")
        return False

    with os.scandir(folder) as listing:
        classes = sorted(item.name for item in listing if item.is_dir() and not item.name.startswith(".") and inside(item))
    if not classes:
        raise SourceError(f"{folder} has no class sub-folders (expected {folder}/<class>/<image>.png)")
    entries: list[Entry] = []
    for label, name in enumerate(classes):
        with os.scandir(folder / name) as listing:  # one system call per file at most: a folder may hold millions
            images = (
                item.name for item in listing
                if item.name.lower().endswith(IMAGE_SUFFIXES) and item.is_file() and inside(item)
            )
            # with a limit no class gives more than `limit` files: only its first ones are kept while listing
            files = sorted(images) if limit is None else heapq.nsmallest(limit, images)
        entries += [Entry(f"{name}/{file}", label) for file in files]
    if not entries:
        raise SourceError(f"{folder} has no PNG or JPEG images in its class sub-folders")
    if limit is not None:
        entries = [entries[i] for i in classes_in_turn(np.array([entry.true_label for entry in entries]), limit)]
    return FolderSource(f"folder {folder}", entries, classes, ignored, folder=folder)


def from_npz(path: Path, limit: int | None) -> NpzSource:
    """An .npz with `X` (n, H, W[, C]), optional integer labels `y` (n,) and, optionally, the names of its labels
    `class_names` (text; matched to the model's class names, as folders are). The arrays' headers are read first: an
    archive whose arrays claim too much, or hold Python objects, is refused before anything is decompressed or
    unpickled. With `limit`, that many rows: taken from the classes in turn where there are labels, else the first."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"file not found: {path}")
    try:
        shape, fortran_order, dtype = _npz_array_header(path, "X")
        if dtype.hasobject:
            raise SourceError(f"{path.name}: X holds Python objects; refused, nothing was unpickled")
        claimed = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        if claimed > MAX_NPZ_BYTES:
            raise SourceError(
                f"{path.name}: X claims shape {shape} of {dtype} ({claimed:,} bytes), more than {MAX_NPZ_BYTES:,}: "
                "refused before decompressing"
            )
        if len(shape) not in (3, 4) or shape[0] == 0:
            raise SourceError(f"{path.name}: X has shape {shape}; want (n, H, W) or (n, H, W, C) with n > 0")
        labels = _npz_array_header(path, "y", required=False)
        if labels is not None and (labels[0] != shape[:1] or not np.issubdtype(labels[2], np.integer)):
            raise SourceError(
                f"{path.name}: y must be {shape[0]} integer labels, got shape {labels[0]} of {labels[2]}"
            )
        y, class_names = None, None
        if labels is not None:
            with np.load(path, allow_pickle=False) as archive:
                y = archive["y"]
                if "class_names" in archive.files:
                    class_names = [str(name) for name in archive["class_names"]]
            if y.min(initial=0) < 0:
                raise SourceError(f"{path.name}: y holds negative labels")
            if class_names is not None and (len(set(class_names)) != len(class_names) or int(y.max(initial=0)) >= len(class_names)):
                raise SourceError(f"{path.name}: class_names must be distinct and name every label of y "
                                  f"(0..{int(y.max(initial=0))}); it has {len(class_names)}")
    except SourceError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise SourceError(f"{path.name}: not a readable .npz ({type(error).__name__}: {error})") from None
    if limit is None:
        rows = range(shape[0])
    elif y is None:
        rows = range(min(limit, shape[0]))
    else:
        rows = classes_in_turn(y, limit)
    entries = [Entry(int(i), None if y is None else int(y[i])) for i in rows]
    span = None if y is None or class_names is not None else int(y.max(initial=-1)) + 1
    return NpzSource(f"npz {path}", entries, class_names, label_span=span, file=path, shape=shape, dtype=dtype,
                     fortran_order=fortran_order)


def _npz_array_header(path: Path, name: str, required: bool = True) -> tuple[tuple[int, ...], bool, np.dtype] | None:
    """Shape, Fortran order and dtype of the array `name` in an .npz, from its .npy header alone (nothing
    decompressed beyond it)."""
    with zipfile.ZipFile(path) as archive:
        if f"{name}.npy" not in archive.namelist():
            if required:
                raise SourceError(f"{path.name} has no array named {name}")
            return None
        with archive.open(f"{name}.npy") as stream:
            return _read_npy_header(stream)


def _read_npy_header(stream) -> tuple[tuple[int, ...], bool, np.dtype]:
    major, _minor = np.lib.format.read_magic(stream)
    read_header = {1: np.lib.format.read_array_header_1_0, 2: np.lib.format.read_array_header_2_0}.get(major)
    if read_header is None:
        raise ValueError(f"unsupported .npy format version {major}")
    return read_header(stream)

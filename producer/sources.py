"""Where a run's images come from: a built-in data set's validation split, a class-per-folder tree, or an .npz.

Everything is decoded here, in the producer, into uint8 pixels; a source that cannot be read whole is
refused with a one-line SourceError before anything is stored.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core import images
from models.artifacts import ModelMetadata
from models.datasets import load_dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MAX_PIXELS = 40_000_000  # a file that claims more is refused from its header, before decoding
MAX_NPZ_BYTES = 4 * 2**30  # an .npz whose X claims more is refused from its header, before decompressing


class SourceError(ValueError):
    """A source that cannot be used as given; the message is one line, for the user."""


@dataclass
class SourceImage:
    pixels: np.ndarray  # uint8 (H, W, C)
    source: str
    true_label: int | None
    name: str = ""  # how messages name it: the path inside the folder, file[index], ...

    def __post_init__(self) -> None:
        self.name = self.name or self.source

    @property
    def sha256(self) -> str:
        """Content hash of the decoded pixels and their shape: the same picture is stored once."""
        digest = hashlib.sha256(repr(self.pixels.shape).encode())
        digest.update(np.ascontiguousarray(self.pixels).tobytes())
        return digest.hexdigest()

    def as_new_image(self):
        from db.runs import NewImage

        height, width, channels = self.pixels.shape
        return NewImage(self.sha256, self.png(), self.source, width, height, channels, self.true_label)

    def png(self) -> bytes:
        return images.png_bytes(self.pixels)


@dataclass
class Rejected:
    """An image of the source that cannot be explained, and why (one line)."""

    source: str
    reason: str

    def as_dict(self) -> dict:
        return {"source": self.source, "reason": self.reason}


@dataclass
class LoadedSource:
    description: str
    images: list[SourceImage]
    class_names: list[str] | None = None  # the names the source's labels stand for (folder names)
    ignored: list[str] = field(default_factory=list)  # what was skipped on purpose, and why
    bad: list[Rejected] = field(default_factory=list)  # every image that cannot be used, each with its reason


def to_uint8(array: np.ndarray, what: str) -> np.ndarray:
    """Pixels to store (core.images.to_uint8), or a SourceError that names the image."""
    try:
        return images.to_uint8(array)
    except images.PixelError as error:
        raise SourceError(f"{what}: {error}") from None


def resize(image: SourceImage, height: int, width: int) -> SourceImage:
    """The image scaled (bilinear) to height x width."""
    from PIL import Image

    pixels = image.pixels[:, :, 0] if image.pixels.shape[2] == 1 else image.pixels
    scaled = np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR))
    return SourceImage(to_uint8(scaled, image.name), image.source, image.true_label, image.name)


def from_builtin(name: str, metadata: ModelMetadata | None, limit: int | None) -> LoadedSource:
    """The validation split of a built-in data set, the same split the model was trained against."""
    if metadata is not None and metadata.dataset == name:
        data = load_dataset(
            name, images=metadata.images, val_fraction=metadata.val_fraction or 0.2, seed=metadata.seed or 0,
            split_seed=metadata.split_seed if metadata.split_seed is not None else 42,
        )
    else:
        data = load_dataset(name)
    count = len(data.y_val) if limit is None else min(limit, len(data.y_val))
    images = [
        SourceImage(to_uint8(data.x_val[i], f"{name}[{i}]"), f"{name}:validation/{i}", int(data.y_val[i]))
        for i in range(count)
    ]
    return LoadedSource(f"{name} validation split", images, list(data.class_names))


def decode_image_file(path: Path, name: str | None = None) -> np.ndarray:
    """The file's pixels as uint8 (H, W, C), or a SourceError that names it (`name`, default the file name)."""
    from PIL import Image, UnidentifiedImageError

    name = name or path.name
    try:
        with Image.open(path) as picture:
            width, height = picture.size
            if width * height > MAX_PIXELS:
                raise SourceError(
                    f"{name} claims {width}x{height} pixels, more than {MAX_PIXELS:,}: refused before decoding"
                )
            picture.load()
            if picture.mode in ("I;16", "I;16B", "I;16L", "I"):
                return to_uint8(np.asarray(picture).astype(np.uint16), name)
            if picture.mode not in ("L", "RGB", "RGBA"):
                picture = picture.convert("RGBA" if "A" in picture.getbands() else "RGB")
            return to_uint8(np.asarray(picture), name)
    except Image.DecompressionBombError:  # Pillow's own header check, for claims far beyond ours
        raise SourceError(
            f"{name} claims more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels: refused before decoding"
        ) from None
    except SourceError:
        raise
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise SourceError(f"{name}: not a readable image ({type(error).__name__}: {error})") from None


def from_folder(folder: Path, limit: int | None) -> LoadedSource:
    """One sub-folder per class (Keras' image_dataset_from_directory convention), PNG and JPEG files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(f"folder not found: {folder}")
    root = folder.resolve()
    ignored: list[str] = []

    def inside(path: Path) -> bool:
        """Symbolic links that lead out of the folder are ignored, never followed."""
        if path.resolve().is_relative_to(root):
            return True
        ignored.append(f"{path} (a link outside {folder})")
        return False

    classes = sorted(
        p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and inside(p)
    )
    if not classes:
        raise SourceError(f"{folder} has no class sub-folders (expected {folder}/<class>/<image>.png)")
    files: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        for path in sorted((folder / name).iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and inside(path):
                files.append((path, label))
    if not files:
        raise SourceError(f"{folder} has no PNG or JPEG images in its class sub-folders")
    if limit is not None:
        files = files[:limit]
    images, bad = [], []
    for path, label in files:  # every file is read: one pass lists every bad one
        name = str(path.relative_to(folder))
        try:
            images.append(SourceImage(decode_image_file(path, name), str(path), label, name))
        except SourceError as error:
            bad.append(Rejected(str(path), str(error)))
    return LoadedSource(f"folder {folder}", images, classes, ignored, bad)


def from_npz(path: Path, limit: int | None) -> LoadedSource:
    """An .npz with `X` (n, H, W[, C]) and optional integer labels `y` (n,). The arrays' headers are
    read first: an archive whose arrays claim too much, or hold Python objects, is refused before
    anything is decompressed or unpickled."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"file not found: {path}")
    try:
        shape, dtype = _npz_array_header(path, "X")
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
        if labels is not None and (labels[0] != shape[:1] or not np.issubdtype(labels[1], np.integer)):
            raise SourceError(
                f"{path.name}: y must be {shape[0]} integer labels, got shape {labels[0]} of {labels[1]}"
            )
        with np.load(path, allow_pickle=False) as archive:
            x = archive["X"]
            y = archive["y"] if labels is not None else None
    except SourceError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise SourceError(f"{path.name}: not a readable .npz ({type(error).__name__}: {error})") from None
    count = len(x) if limit is None else min(limit, len(x))
    images, bad = [], []
    for i in range(count):
        name = f"{path.name}[{i}]"
        try:
            images.append(SourceImage(to_uint8(x[i], name), f"{path}[{i}]", None if y is None else int(y[i]), name))
        except SourceError as error:
            bad.append(Rejected(f"{path}[{i}]", str(error)))
    return LoadedSource(f"npz {path}", images, bad=bad)


def _npz_array_header(path: Path, name: str, required: bool = True) -> tuple[tuple[int, ...], np.dtype] | None:
    """Shape and dtype of the array `name` in an .npz, from its .npy header alone (nothing decompressed
    beyond it)."""
    with zipfile.ZipFile(path) as archive:
        if f"{name}.npy" not in archive.namelist():
            if required:
                raise SourceError(f"{path.name} has no array named {name}")
            return None
        with archive.open(f"{name}.npy") as stream:
            major, _minor = np.lib.format.read_magic(stream)
            read_header = {1: np.lib.format.read_array_header_1_0, 2: np.lib.format.read_array_header_2_0}.get(major)
            if read_header is None:
                raise ValueError(f"unsupported .npy format version {major}")
            shape, _fortran_order, dtype = read_header(stream)
    return shape, dtype

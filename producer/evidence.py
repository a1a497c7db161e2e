"""Where the user says each image's evidence is, for the audit's pointing figures: `--evidence DIR` (a mask per image
at the same relative path as in the folder, or that path with .png; non-zero pixels are evidence) or `--boxes
FILE.csv` (`path,x0,y0,x1,y1` in pixels of the image as stored, x1 and y1 exclusive as in a Python slice; several
rows of one image are their union). The built-in data sets bring their own: the generator's known answer.

Checked with the images (a mask of the wrong size, a box outside its image, evidence for no image: every one is
listed, nothing is stored) and read again, a chunk at a time, as the images are stored: nothing is held for the
whole source. An image whose evidence is empty (or that has none) gets no pointing figures.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from producer.sources import IMAGE_SUFFIXES, BuiltinSource, Entry, Source


class EvidenceError(ValueError):
    """Evidence that cannot be used; `problems` lists each, one line."""

    def __init__(self, message: str, problems: list[str]):
        super().__init__(message)
        self.problems = problems


class Evidence:
    """Each image's evidence mask, by its source entry."""

    description = ""

    def problem(self, entry: Entry, read_size: tuple[int, int], stored_size: tuple[int, int]) -> str | None:
        """Why this image's evidence cannot be used, in one line, or None."""
        return None

    def mask(self, entry: Entry, read_size: tuple[int, int], stored_size: tuple[int, int]) -> np.ndarray | None:
        """The image's evidence at its stored size; None when it has none."""
        raise NotImplementedError

    def unmatched(self) -> list[str]:
        """Evidence given for no image of the folder."""
        return []


class MaskFolder(Evidence):
    def __init__(self, folder: Path, images: Path):
        self.folder, self.images = folder, images
        self.description = f"masks in {folder}"

    def _file(self, entry: Entry) -> Path | None:
        for candidate in (self.folder / entry.key, (self.folder / entry.key).with_suffix(".png")):
            if candidate.is_file():
                return candidate
        return None

    def _read(self, path: Path) -> np.ndarray:
        from PIL import Image

        with Image.open(path) as picture:
            # transparency is not evidence: an opaque black background would make every pixel count
            colour = picture.convert("RGBA") if "A" in picture.getbands() or picture.mode == "P" else picture
            array = np.asarray(colour)
        if array.ndim == 3 and array.shape[2] == 4:
            return (array[:, :, :3] != 0).any(axis=2) & (array[:, :, 3] > 0)
        return (array != 0).any(axis=2) if array.ndim == 3 else array != 0

    def problem(self, entry, read_size, stored_size):
        path = self._file(entry)
        if path is None:
            return None
        try:
            shape = self._read(path).shape
        except (OSError, ValueError) as error:
            return f"{path}: not a readable mask ({type(error).__name__}: {error})"
        if shape != tuple(read_size):
            return f"{path} is {shape[0]}x{shape[1]}, its image {entry.key} is {read_size[0]}x{read_size[1]}"
        return None

    def mask(self, entry, read_size, stored_size):
        path = self._file(entry)
        if path is None:
            return None
        mask = self._read(path)
        if mask.shape != tuple(stored_size):  # the image was resized (--resize): its mask with it
            from PIL import Image

            scaled = Image.fromarray(mask.astype(np.uint8) * 255).resize(stored_size[::-1], Image.Resampling.NEAREST)
            mask = np.asarray(scaled) > 0
        return mask if mask.any() else None

    def unmatched(self):
        """Mask files whose image is not in the folder (at the same path, or the same path with another suffix)."""
        found = []
        for directory, _, files in os.walk(self.folder):
            for name in sorted(files):
                if not name.lower().endswith(IMAGE_SUFFIXES):
                    continue
                relative = (Path(directory) / name).relative_to(self.folder)
                image = self.images / relative
                if not image.is_file() and not any(image.with_suffix(s).is_file() for s in IMAGE_SUFFIXES):
                    found.append(f"{self.folder / relative}: a mask for no image (no {image})")
        return sorted(found)


class BoxFile(Evidence):
    def __init__(self, path: Path, images: Path):
        self.path, self.images = path, images
        self.description = f"boxes in {path}"
        self.boxes: dict[str, list[tuple[int, int, int, int]]] = {}
        self.errors: list[str] = []
        try:
            with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: a spreadsheet's BOM
                for number, row in enumerate(csv.reader(handle), start=1):
                    if not row or (number == 1 and row[0].strip().lower() == "path"):
                        continue  # a blank line, or the header
                    self._add(number, row)
        except (OSError, UnicodeDecodeError) as error:
            raise EvidenceError(f"{path}: cannot be read ({type(error).__name__}: {error})", []) from None

    def _add(self, number: int, row: list[str]) -> None:
        where = f"{self.path}, line {number}"
        if len(row) != 5:
            self.errors.append(f"{where}: want path,x0,y0,x1,y1, got {len(row)} fields")
            return
        try:
            x0, y0, x1, y1 = (int(value) for value in row[1:])
        except ValueError:
            self.errors.append(f"{where}: x0,y0,x1,y1 must be whole numbers of pixels, got {','.join(row[1:])}")
            return
        if not (0 <= x0 < x1 and 0 <= y0 < y1):
            self.errors.append(f"{where}: an empty box ({x0},{y0})-({x1},{y1}); want 0 <= x0 < x1 and 0 <= y0 < y1")
            return
        self.boxes.setdefault(self._key(row[0]), []).append((x0, y0, x1, y1))

    def _key(self, path: str) -> str:
        """A path as the folder's entries name their images: relative to it, with forward slashes (`./cat/a.png`,
        `cat\\a.png` and the absolute path inside the folder all name `cat/a.png`)."""
        given = Path(path.strip().replace("\\", "/"))
        if given.is_absolute():
            try:
                given = given.resolve().relative_to(self.images.resolve())
            except ValueError:
                return given.as_posix()  # outside the folder: reported as boxes for no image
        return given.as_posix().removeprefix("./")

    def problem(self, entry, read_size, stored_size):
        height, width = stored_size
        for x0, y0, x1, y1 in self.boxes.get(str(entry.key), []):
            if x1 > width or y1 > height:
                return (f"{self.path}: box ({x0},{y0})-({x1},{y1}) of {entry.key} reaches outside its "
                        f"{height}x{width} pixels as stored")
        return None

    def mask(self, entry, read_size, stored_size):
        boxes = self.boxes.get(str(entry.key))
        if not boxes:
            return None
        mask = np.zeros(stored_size, dtype=bool)
        for x0, y0, x1, y1 in boxes:
            mask[y0:y1, x0:x1] = True
        return mask

    def unmatched(self):
        return self.errors + [f"{self.path}: boxes for no image ({key} is not in {self.images})"
                              for key in sorted(self.boxes) if not (self.images / key).is_file()]


class KnownAnswer(Evidence):
    """A built-in data set's evidence: where the generator painted the rectangle or the objects."""

    def __init__(self, masks: np.ndarray, dataset: str):
        self.masks = masks
        self.description = f"the {dataset} generator's known evidence"

    def mask(self, entry, read_size, stored_size):
        mask = self.masks[entry.key]
        return mask if mask.any() and mask.shape == tuple(stored_size) else None


def check_options(folder: Path | None, evidence: Path | None, boxes: Path | None) -> None:
    """Refuse evidence options that cannot go together, from the options alone."""
    if evidence is not None and boxes is not None:
        raise EvidenceError("give one of --evidence and --boxes", [])
    if (evidence is not None or boxes is not None) and folder is None:
        raise EvidenceError("--evidence and --boxes go with --folder: their paths are relative to it", [])


def for_source(source: Source, evidence: Path | None, boxes: Path | None) -> Evidence | None:
    """The evidence of a run's images: the user's masks or boxes for a folder (check_options first), a built-in
    set's own, or none."""
    if evidence is not None or boxes is not None:
        if evidence is not None:
            if not Path(evidence).is_dir():
                raise EvidenceError(f"evidence folder not found: {evidence}", [])
            return MaskFolder(Path(evidence), source.folder)
        if not Path(boxes).is_file():
            raise EvidenceError(f"boxes file not found: {boxes}", [])
        return BoxFile(Path(boxes), source.folder)
    if isinstance(source, BuiltinSource) and source.masks is not None:
        return KnownAnswer(source.masks, source.dataset)
    return None

"""`--limit N` takes its images from the classes in turn, so a source sorted by class is not cut to its first class."""

from __future__ import annotations

import numpy as np
from PIL import Image

from producer.sources import from_folder, from_npz


def class_folder(root, counts: dict[str, int]):
    """root/<class>/<i>.png, written in reverse so that the order on disk is not the sorted one."""
    for name, count in counts.items():
        (root / name).mkdir(parents=True)
        for i in reversed(range(count)):
            Image.fromarray(np.full((4, 4, 3), i, np.uint8)).save(root / name / f"{i:02d}.png")
    return root


def test_a_limited_folder_takes_the_classes_in_turn_in_sorted_order(tmp_path):
    folder = class_folder(tmp_path / "photos", {"cat": 30, "dog": 30, "owl": 1})
    keys = [entry.key for entry in from_folder(folder, limit=6).entries]
    # each class's first files in sorted order; the class that runs out leaves its turn to the others
    assert keys == ["cat/00.png", "cat/01.png", "cat/02.png", "dog/00.png", "dog/01.png", "owl/00.png"]
    assert [entry.true_label for entry in from_folder(folder, limit=6).entries] == [0, 0, 0, 1, 1, 2]
    assert len(from_folder(folder, limit=None).entries) == 61
    assert len(from_folder(folder, limit=100).entries) == 61


def test_a_limited_npz_with_labels_takes_the_classes_in_turn(tmp_path):
    y = np.repeat([0, 1, 2], 10)  # sorted by class, as an export often is
    np.savez(tmp_path / "sorted.npz", X=np.zeros((30, 4, 4, 3), np.uint8), y=y)
    source = from_npz(tmp_path / "sorted.npz", limit=6)
    assert [entry.key for entry in source.entries] == [0, 1, 10, 11, 20, 21]
    assert [entry.true_label for entry in source.entries] == [0, 0, 1, 1, 2, 2]


def test_a_limited_npz_without_labels_takes_its_first_rows(tmp_path):
    np.savez(tmp_path / "unlabelled.npz", X=np.zeros((30, 4, 4, 3), np.uint8))
    assert [entry.key for entry in from_npz(tmp_path / "unlabelled.npz", limit=4).entries] == [0, 1, 2, 3]

"""Two runs on the same images, compared by what their models look at: per image, the rank correlation of the two
maps for the same label and the overlap of their top regions; per class, each run's mean map and their difference.

The same label in both runs: the true label (each run's map for it: its predicted label's when it got the image
right, its true label's otherwise); for an image without one, the label both runs predict, and nothing when they
predict different labels (two maps for two labels are not comparable). Streams over the images both runs explained
(a chunk at a time); the caller's session; both runs are audited first by the caller when their maps may be missing
(audit.service.ensure_audit)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata
from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from audit import maps as relevance
from audit.service import CHUNK
from db.formats import decode_maps
from db.models import Explanation, Run

TOP_SHARE = 0.1  # a map's top region: its highest tenth of cells (and every cell tied with the last of them)


@dataclass
class ClassComparison:
    class_name: str  # the true class (the predicted one, the same in both runs, for images without)
    images: int
    correlation: float  # mean over its images
    overlap: float  # mean over its images whose maps both have a top region
    map_a: np.ndarray
    map_b: np.ndarray

    @property
    def difference(self) -> np.ndarray:
        return self.map_b - self.map_a


def label_map(stack: np.ndarray, predicted: int, true: int | None, label: int) -> np.ndarray | None:
    """An explanation's map for `label` (audit.maps.explanation_maps: predicted first, then the true label's when it
    differs), or None when that label was not explained."""
    if label == predicted:
        return stack[0]
    if label == true and len(stack) > 1:
        return stack[1]
    return None


def map_agreement(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row by row for (n, cells) maps: Spearman's rank correlation (0 where a map is flat), and the intersection over
    union of the two top regions: the cells at or above the TOP_SHARE-th largest value, ties included (a map is
    constant over each superpixel), among those with positive weight; NaN where a map has no positive weight."""
    ranks_a, ranks_b = rankdata(a, axis=1), rankdata(b, axis=1)
    centred_a = ranks_a - ranks_a.mean(axis=1, keepdims=True)
    centred_b = ranks_b - ranks_b.mean(axis=1, keepdims=True)
    spread = np.sqrt((centred_a**2).sum(axis=1) * (centred_b**2).sum(axis=1))
    correlation = np.where(spread > 0, (centred_a * centred_b).sum(axis=1) / np.where(spread > 0, spread, 1), 0.0)
    top_a, top_b = _top_region(a), _top_region(b)
    union = (top_a | top_b).sum(axis=1)
    empty = ~top_a.any(axis=1) | ~top_b.any(axis=1)
    overlap = np.where(empty, np.nan, (top_a & top_b).sum(axis=1) / np.maximum(union, 1))
    return correlation, overlap


def _top_region(values: np.ndarray) -> np.ndarray:
    count = max(1, int(round(values.shape[1] * TOP_SHARE)))
    threshold = -np.partition(-values, count - 1, axis=1)[:, count - 1:count]
    return (values >= threshold) & (values > relevance.NEGLIGIBLE)


def compare_runs(session: Session, run_a: Run, run_b: Run, on_image=None) -> list[ClassComparison]:
    """The per-class comparison; `on_image(image id, correlation, overlap)` is called for every image compared, in
    image order (overlap None where a map has no top region)."""
    a, b = aliased(Explanation), aliased(Explanation)
    sums: dict[int, list] = {}
    grid = None
    last = -1
    while True:
        rows = session.execute(
            select(a.image_id, a.relevance, b.relevance, a.true_label, a.predicted_label, b.predicted_label)
            .join(b, (b.image_id == a.image_id) & (b.run_id == run_b.id))
            .where(a.run_id == run_a.id, a.status == "ok", b.status == "ok", a.image_id > last,
                   a.relevance.is_not(None), b.relevance.is_not(None))
            .order_by(a.image_id).limit(CHUNK)
        ).all()
        if not rows:
            break
        last = rows[-1].image_id
        compared = []
        for image_id, blob_a, blob_b, true, predicted_a, predicted_b in rows:
            label = true if true is not None else predicted_a if predicted_a == predicted_b else None
            if label is None:
                continue
            map_a = label_map(decode_maps(blob_a), predicted_a, true, label)
            map_b = label_map(decode_maps(blob_b), predicted_b, true, label)
            if map_a is None or map_b is None:
                continue
            grid = grid or map_a.shape
            compared.append((image_id, label, relevance.on_grid(map_a, grid), relevance.on_grid(map_b, grid)))
        if not compared:
            continue
        maps_a = np.stack([entry[2] for entry in compared])
        maps_b = np.stack([entry[3] for entry in compared])
        correlation, overlap = map_agreement(maps_a.reshape(len(compared), -1), maps_b.reshape(len(compared), -1))
        for i, (image_id, label, map_a, map_b) in enumerate(compared):
            entry = sums.setdefault(label, [0, 0.0, 0.0, 0, np.zeros(grid), np.zeros(grid)])
            entry[0] += 1
            entry[1] += correlation[i]
            if not np.isnan(overlap[i]):
                entry[2] += overlap[i]
                entry[3] += 1
            entry[4] += map_a
            entry[5] += map_b
            if on_image is not None:
                on_image(image_id, float(correlation[i]), None if np.isnan(overlap[i]) else float(overlap[i]))
    return [
        ClassComparison(run_a.class_names[label], n, total_correlation / n,
                        total_overlap / with_top if with_top else float("nan"), sum_a / n, sum_b / n)
        for label, (n, total_correlation, total_overlap, with_top, sum_a, sum_b) in sorted(sums.items())
    ]

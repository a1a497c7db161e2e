"""Two runs on the same images, compared by what their models look at: per image, the rank correlation of the two
predicted-label maps and the overlap of their top regions; per class, each run's mean map and their difference.
Streams over the images both runs explained (a chunk at a time); the caller's session; both runs are audited first
by the caller when their maps may be missing (audit.service.ensure_audit)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata
from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from audit import maps as relevance
from db.models import Explanation, Run

TOP_SHARE = 0.1  # a map's top region: its highest tenth of cells
CHUNK = 2000


@dataclass
class ClassComparison:
    class_name: str  # the true class (run A's predicted one for images without)
    images: int
    correlation: float  # mean over its images
    overlap: float
    map_a: np.ndarray
    map_b: np.ndarray

    @property
    def difference(self) -> np.ndarray:
        return self.map_b - self.map_a


def map_agreement(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row by row for (n, cells) maps: Spearman's rank correlation, and the intersection over union of the two top
    regions (the TOP_SHARE of cells with the highest values)."""
    ranks_a, ranks_b = rankdata(a, axis=1), rankdata(b, axis=1)
    centred_a = ranks_a - ranks_a.mean(axis=1, keepdims=True)
    centred_b = ranks_b - ranks_b.mean(axis=1, keepdims=True)
    spread = np.sqrt((centred_a**2).sum(axis=1) * (centred_b**2).sum(axis=1))
    correlation = np.where(spread > 0, (centred_a * centred_b).sum(axis=1) / np.where(spread > 0, spread, 1), 0.0)
    top = max(1, int(round(a.shape[1] * TOP_SHARE)))
    top_a = np.zeros(a.shape, dtype=bool)
    top_b = np.zeros(b.shape, dtype=bool)
    np.put_along_axis(top_a, np.argsort(-a, axis=1, kind="stable")[:, :top], True, axis=1)
    np.put_along_axis(top_b, np.argsort(-b, axis=1, kind="stable")[:, :top], True, axis=1)
    overlap = (top_a & top_b).sum(axis=1) / (top_a | top_b).sum(axis=1)
    return correlation, overlap


def compare_runs(session: Session, run_a: Run, run_b: Run):
    """Yield (image id, correlation, overlap) for every image both runs explained, in image order; the per-class
    summary is the generator's return value (a list of ClassComparison), see `class_comparison`."""
    a, b = aliased(Explanation), aliased(Explanation)
    sums: dict[int, list] = {}
    last = -1
    while True:
        rows = session.execute(
            select(a.image_id, a.relevance, b.relevance, a.true_label, a.predicted_label)
            .join(b, (b.image_id == a.image_id) & (b.run_id == run_b.id))
            .where(a.run_id == run_a.id, a.status == "ok", b.status == "ok", a.image_id > last,
                   a.relevance.is_not(None), b.relevance.is_not(None))
            .order_by(a.image_id).limit(CHUNK)
        ).all()
        if not rows:
            break
        first_a = relevance.decode_maps(rows[0][1])[0]
        maps_a = np.stack([relevance.decode_maps(row[1])[0] for row in rows])
        maps_b = np.stack([_on_grid(relevance.decode_maps(row[2])[0], first_a.shape) for row in rows])
        correlation, overlap = map_agreement(maps_a.reshape(len(rows), -1), maps_b.reshape(len(rows), -1))
        for i, row in enumerate(rows):
            key = row[3] if row[3] is not None else row[4]
            entry = sums.setdefault(key, [0, 0.0, 0.0, np.zeros(first_a.shape), np.zeros(first_a.shape)])
            entry[0] += 1
            entry[1] += correlation[i]
            entry[2] += overlap[i]
            entry[3] += maps_a[i]
            entry[4] += maps_b[i]
            yield row[0], float(correlation[i]), float(overlap[i])
        last = rows[-1][0]
    return [
        ClassComparison(run_a.class_names[key], n, total_correlation / n, total_overlap / n, sum_a / n, sum_b / n)
        for key, (n, total_correlation, total_overlap, sum_a, sum_b) in sorted(sums.items())
    ]


def _on_grid(values: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    return values if values.shape == grid else relevance.resample(values.astype(np.float64), grid).astype(np.float32)


def class_comparison(session: Session, run_a: Run, run_b: Run) -> tuple[dict[int, tuple[float, float]],
                                                                          list[ClassComparison]]:
    """Every shared image's (correlation, overlap) by image id, and the per-class comparison."""
    per_image = {}
    stream = compare_runs(session, run_a, run_b)
    while True:
        try:
            image_id, correlation, overlap = next(stream)
        except StopIteration as finished:
            return per_image, finished.value
        per_image[image_id] = (correlation, overlap)

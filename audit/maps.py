"""Relevance maps: an explanation's superpixel weights painted back onto the pixels and resampled to one grid per
run, so that explanations of different images (whose superpixels differ) can be averaged and compared. Pure NumPy.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from db.formats import decode_mask, encode_maps

GRID = 32  # cells per side of a run's maps (the images' own size when smaller)
FEATURE_GRID = 16  # cells per side of the maps the strategies are grouped on
NEGLIGIBLE = 1e-9  # weights no larger than this are round-off (a model blind to the image), not a map to scale up


def grid_for(shape: tuple[int, ...]) -> tuple[int, int]:
    """The grid of maps made from segment maps of this (height, width)."""
    return min(GRID, shape[0]), min(GRID, shape[1])


@lru_cache(maxsize=32)
def area_matrix(size: int, cells: int) -> np.ndarray:
    """(cells, size): each row averages the pixels its cell covers, a pixel split between two cells by overlap."""
    edges = np.linspace(0, size, cells + 1)
    pixels = np.arange(size)
    overlap = np.clip(np.minimum(edges[1:, None], pixels[None, :] + 1) - np.maximum(edges[:-1, None], pixels[None, :]),
                      0, None)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float64)


def resample(picture: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """A (height, width) array averaged onto `grid` cells."""
    return area_matrix(picture.shape[0], grid[0]) @ picture @ area_matrix(picture.shape[1], grid[1]).T


def on_grid(values: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """A map onto another grid (an image of another size than the run's first), or as it is."""
    return values if values.shape == tuple(grid) else resample(values.astype(np.float64), grid).astype(np.float32)


def relevance_map(segments: np.ndarray, weights: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """The weights painted onto their superpixels and averaged onto `grid`, scaled so that the largest absolute
    value is 1 (all zeros when no weight is above NEGLIGIBLE): maps of different images weigh the same in a mean."""
    painted = resample(np.asarray(weights, dtype=np.float64)[segments], grid)
    peak = np.abs(painted).max()
    return (painted / peak if peak > NEGLIGIBLE else np.zeros_like(painted)).astype(np.float32)


def explanation_maps(segments: np.ndarray, weights: dict[int, np.ndarray], predicted: int,
                     true: int | None) -> np.ndarray:
    """(1 or 2, gh, gw): the predicted label's map, then the true label's when it differs and was explained."""
    grid = grid_for(segments.shape)
    labels = [predicted] + ([true] if true is not None and true != predicted and true in weights else [])
    return np.stack([relevance_map(segments, weights[label], grid) for label in labels])


def features(maps: np.ndarray) -> np.ndarray:
    """(n, d) from (n, gh, gw) predicted-label maps: where the evidence FOR the decision lies, as shares. The positive
    part, averaged onto at most FEATURE_GRID cells a side, scaled to sum 1 (a map without positive weight stays 0):
    two explanations that put the same share of their evidence on the same place are close, whatever their weights'
    scale, and one that splits its evidence between two places lies between the two. (Scaled to unit length instead,
    the tagged demo's images that lean on the tag and the tagged rings that only glance at it fell in one group:
    precision 0.69 against 0.92; benchmarks.audit.)"""
    positive = np.clip(maps, 0, None)
    grid = (min(FEATURE_GRID, maps.shape[1]), min(FEATURE_GRID, maps.shape[2]))
    rows, cols = area_matrix(maps.shape[1], grid[0]).astype(np.float32), area_matrix(maps.shape[2], grid[1]).astype(np.float32)
    pooled = (rows @ positive @ cols.T).reshape(len(maps), -1)
    totals = pooled.sum(axis=1, keepdims=True)
    return (pooled / np.where(totals > 0, totals, 1)).astype(np.float32)


ROWS = ("top", "middle", "bottom")
COLUMNS = ("left", "centre", "right")


def location(mean_map: np.ndarray) -> str:
    """Where a (mean) map's positive weight gathers, in words: `bottom right`, `top`, `centre`, or `all over`
    when its strongest cells (at least half the peak) cover more than a third of the map."""
    positive = np.clip(mean_map, 0, None)
    if positive.max() <= NEGLIGIBLE:
        return "nowhere"
    strong = positive >= positive.max() / 2
    if strong.mean() > 1 / 3:
        return "all over"
    rows, cols = np.nonzero(strong)
    weight = positive[rows, cols]
    y = np.average(rows + 0.5, weights=weight) / mean_map.shape[0]
    x = np.average(cols + 0.5, weights=weight) / mean_map.shape[1]
    row, col = ROWS[min(int(y * 3), 2)], COLUMNS[min(int(x * 3), 2)]
    if row == "middle":
        return "centre" if col == "centre" else col
    return row if col == "centre" else f"{row} {col}"


def evidence_figures(segments: np.ndarray, weights: np.ndarray, evidence: np.ndarray) -> tuple[bool, float]:
    """(pointing: at least half the pixels of the superpixel with the largest weight are evidence; evidence share:
    sum over superpixels of max(weight, 0) x its evidence pixels, over the sum of max(weight, 0) x its pixels, 0 when
    no weight is positive)."""
    n = len(weights)
    flat = segments.ravel()
    area = np.bincount(flat, minlength=n).astype(np.float64)
    on_evidence = np.bincount(flat, weights=evidence.ravel().astype(np.float64), minlength=n)
    top = int(np.argmax(weights))
    positive = np.clip(np.asarray(weights, dtype=np.float64), 0, None)
    total = float(positive @ area)
    return bool(2 * on_evidence[top] >= area[top]), float(positive @ on_evidence) / total if total > 0 else 0.0


def audit_columns(result, true_label: int | None, evidence: bytes | None) -> dict:
    """What an explanation (worker.engine.Explanation) stores for the audit as it is saved (the worker makes these
    columns and db.jobs.save_explanation writes them): its maps (db.formats.encode_maps), and against the image's
    evidence (as stored: db.formats.encode_mask), if any, pointing and evidence share for the true label (the
    predicted one for an image without), when that label was explained."""
    weights = {label: explained.weights for label, explained in result.labels.items()}
    columns = {"relevance": encode_maps(explanation_maps(result.segments, weights, result.predicted_label, true_label)),
               "pointing": None, "evidence_share": None}
    label = result.predicted_label if true_label is None else true_label
    if evidence is not None and label in weights:
        columns["pointing"], columns["evidence_share"] = evidence_figures(result.segments, weights[label],
                                                                          decode_mask(evidence))
    return columns

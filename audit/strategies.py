"""Strategies: within one predicted class, the groups of explanations that look at the same place, after spectral
relevance analysis (SpRAy; Lapuschkin et al., Nature Communications 2019): a k-nearest-neighbour affinity between the
normalised maps, a spectral embedding, the number of groups from the eigengap, k-means in the embedding.

Bounded at any size: the groups are found on a seeded sample of each class (a `Reservoir` filled as the audit streams
over the run: the whole class, in order, while it has at most `sample_size` explanations), reduced to COMPONENTS
principal components, and every explanation outside the sample joins the group of its nearest neighbours in the
sample (`Grouping.assign`). Deterministic for a seed and an order of the rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE = 2000  # explanations per class the spectral analysis runs on: a class of at most this many is grouped whole
# Sampled explanations of all classes together: what a run of many large classes keeps in memory while it streams
# (a few hundred bytes each: its features as float16, its image id and its place in the stream; 200,000 are about
# 100 MB). A run of at most SAMPLED_ROWS / SAMPLE classes (100) samples SAMPLE of each whatever its size; one of more
# classes, each larger than its share, samples fewer of each (sample_size): a thousand classes of a thousand
# explanations, 200 of each.
SAMPLED_ROWS = 200_000
COMPONENTS = 32  # principal components of the maps the neighbours are found in
NEIGHBOURS = 10  # the affinity: each map's nearest neighbours
MAX_GROUPS = 8  # the eigengap is looked for among the first MAX_GROUPS + 1 eigenvalues
MIN_IMAGES = 2 * NEIGHBOURS  # fewer explanations than this in a class make one group


def sample_size(counts: list[int]) -> int:
    """The size of every class's sample, given how many explanations each class has: SAMPLE while the samples fit in
    SAMPLED_ROWS together (each class keeps min(its count, the size)), else the largest size at which they do, but
    never below MIN_IMAGES (the fewest that make more than one group: only a run of more than 10,000 classes goes
    over SAMPLED_ROWS). The classes no larger than the size are sampled whole."""
    counts, total, most = np.asarray(counts, dtype=np.int64), SAMPLED_ROWS, SAMPLE
    if np.minimum(counts, most).sum() <= total:
        return most
    low, high = MIN_IMAGES, most  # the largest size that fits, by bisection (the sum grows with the size)
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if np.minimum(counts, middle).sum() <= total else (low, middle - 1)
    return low


class Reservoir:
    """A seeded uniform sample of at most `size` rows of a stream, filled a chunk at a time (algorithm R; Vitter,
    ACM TOMS 1985): the first `size` rows are kept, then the row at place i of the stream (from 0) replaces a random
    one with probability size / (i + 1). Its memory is `size` rows, however long the stream; the same seed and the
    same rows in the same order give the same sample, whatever the chunks they come in; a stream of at most `size`
    rows is kept whole, in order."""

    def __init__(self, size: int, seed):
        self.size = size
        self.seen = 0
        self._rng = np.random.default_rng(seed)
        self._kept: tuple[np.ndarray, ...] = ()  # each row's place in the stream, then the columns; grown as filled

    def add(self, *columns: np.ndarray) -> None:
        """The next rows of the stream, as columns of the same length (features, ids, ...)."""
        n = len(columns[0])
        columns = (np.arange(self.seen, self.seen + n), *columns)
        filled = min(self.seen, self.size)
        free = min(self.size - filled, n)
        if free:
            if not self._kept or filled + free > len(self._kept[0]):  # twice the rows, up to `size`
                capacity = min(self.size, max(2 * (filled + free), 16))
                grown = tuple(np.empty((capacity, *column.shape[1:]), column.dtype) for column in columns)
                for new, old in zip(grown, self._kept):
                    new[:filled] = old[:filled]
                self._kept = grown
            for kept, column in zip(self._kept, columns):
                kept[filled:filled + free] = column[:free]
        if free < n:
            slots = self._rng.integers(0, columns[0][free:] + 1)
            rows = np.flatnonzero(slots < self.size) + free
            slots = slots[rows - free]
            # a slot drawn twice in one chunk keeps the later row, as one row at a time would
            _, last = np.unique(slots[::-1], return_index=True)
            rows, slots = rows[::-1][last], slots[::-1][last]
            for kept, column in zip(self._kept, columns):
                kept[slots] = column[rows]
        self.seen += n

    def sample(self) -> tuple[np.ndarray, ...]:
        """The sampled rows, columns as given, in the order they came."""
        kept = tuple(column[:min(self.seen, self.size)] for column in self._kept)
        order = np.argsort(kept[0], kind="stable") if self.seen > self.size else slice(None)
        return tuple(column[order] for column in kept[1:])


@dataclass
class Grouping:
    groups: np.ndarray  # (n,) group of each sampled explanation, 0 the largest
    eigenvalues: list[float]  # the normalised Laplacian's smallest, from which the number of groups was chosen
    sampled: int  # explanations the groups were found on
    mean: np.ndarray | None = None  # the principal components the sample was reduced to (None: one group)
    components: np.ndarray | None = None
    points: np.ndarray | None = None  # the sample, reduced

    def assign(self, features: np.ndarray) -> np.ndarray:
        """The group of each row of `features` (explanations of the class outside the sample): the most common among
        its NEIGHBOURS nearest sampled explanations, the smaller group number on a tie."""
        if self.points is None:
            return np.zeros(len(features), dtype=np.int64)
        reduced = (features.astype(np.float32) - self.mean) @ self.components.T
        distances = ((reduced ** 2).sum(axis=1, keepdims=True) - 2 * reduced @ self.points.T
                     + (self.points ** 2).sum(axis=1)[None, :])
        k = min(NEIGHBOURS, len(self.points))
        nearest = self.groups[np.argpartition(distances, k - 1, axis=1)[:, :k]]
        votes = np.zeros((len(features), int(self.groups.max()) + 1), dtype=np.int64)
        np.add.at(votes, (np.repeat(np.arange(len(features)), k), nearest.ravel()), 1)
        return votes.argmax(axis=1)


def one_thread():
    """A context in which the grouping runs on one BLAS and OpenMP thread. A class's matrices are small (at most
    SAMPLE x COMPONENTS): waking threads for each step costs more than the step, ten times the work or more on a busy
    two-core machine, paid once per class (a thousand times in a run of a thousand classes; benchmarks.audit)."""
    import scipy.sparse.linalg  # noqa: F401  (a limit holds for the libraries loaded when it is set: load them first)
    import sklearn.cluster  # noqa: F401
    import sklearn.decomposition  # noqa: F401
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def find_strategies(features: np.ndarray, seed: int = 0) -> Grouping:
    """Group the rows of `features` (one normalised map per explanation of a class, or a sample of them: at most
    SAMPLE, see Reservoir); the rest of the class joins them through `Grouping.assign`."""
    n = len(features)
    if n < MIN_IMAGES or not np.ptp(features, axis=0).any():  # too few, or all alike (say, all blind): one group
        return Grouping(np.zeros(n, dtype=np.int64), [], n)
    from sklearn.decomposition import PCA

    components = min(COMPONENTS, features.shape[1], n - 1)
    reduce = PCA(n_components=components, random_state=seed).fit(features)
    points = reduce.transform(features)
    groups, eigenvalues = spectral_groups(points, seed)
    # number the groups by size, largest first, so that group 0 is the class's usual way of looking
    sizes = np.bincount(groups)
    order = np.argsort(-sizes, kind="stable")
    renumber = np.empty_like(order)
    renumber[order] = np.arange(len(order))
    return Grouping(renumber[groups], eigenvalues, n, reduce.mean_.astype(np.float32),
                    reduce.components_.astype(np.float32), points.astype(np.float32))


def spectral_groups(points: np.ndarray, seed: int) -> tuple[np.ndarray, list[float]]:
    """SpRAy on a sample: groups and the eigenvalues that chose their number."""
    from scipy.sparse import identity
    from scipy.sparse.csgraph import laplacian
    from scipy.sparse.linalg import eigsh
    from sklearn.cluster import KMeans
    from sklearn.neighbors import kneighbors_graph

    affinity = kneighbors_graph(points, n_neighbors=NEIGHBOURS, mode="connectivity", include_self=False)
    affinity = 0.5 * (affinity + affinity.T)  # symmetric: a neighbour either way
    normalised = laplacian(affinity, normed=True)
    wanted = min(MAX_GROUPS + 1, len(points) - 1)
    # the smallest eigenvalues of L are the largest of I - L, which the Lanczos method finds fast
    start = np.random.RandomState(seed).uniform(size=len(points))
    values, vectors = eigsh(identity(len(points)) - normalised, k=wanted, which="LA", v0=start)
    order = np.argsort(-values)
    eigenvalues = 1 - values[order]
    vectors = vectors[:, order]
    gaps = np.diff(eigenvalues)
    # the first gap at least half the largest: a small sample's groups can have sub-groups whose gap comes later and
    # is a little larger than the one between the groups themselves
    count = int(np.flatnonzero(gaps >= gaps.max() / 2)[0]) + 1
    if count == 1:
        return np.zeros(len(points), dtype=np.int64), [round(float(v), 6) for v in eigenvalues]
    embedding = vectors[:, :count]
    norms = np.linalg.norm(embedding, axis=1, keepdims=True)
    embedding = embedding / np.where(norms > 0, norms, 1)  # rows on the unit sphere (Ng, Jordan and Weiss)
    groups = KMeans(n_clusters=count, n_init=10, random_state=seed).fit_predict(embedding)
    return groups.astype(np.int64), [round(float(v), 6) for v in eigenvalues]

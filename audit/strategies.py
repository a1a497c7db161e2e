"""Strategies: within one predicted class, the groups of explanations that look at the same place, after spectral
relevance analysis (SpRAy; Lapuschkin et al., Nature Communications 2019): a k-nearest-neighbour affinity between the
normalised maps, a spectral embedding, the number of groups from the eigengap, k-means in the embedding.

Bounded at any size: the groups are found on a seeded sample of at most SAMPLE explanations of the class (reduced to
COMPONENTS principal components first), and every other explanation joins the group of its nearest neighbours in the
sample. Deterministic for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE = 2000  # explanations per class the spectral analysis runs on
COMPONENTS = 32  # principal components of the maps the neighbours are found in
NEIGHBOURS = 10  # the affinity: each map's nearest neighbours
MAX_GROUPS = 8  # the eigengap is looked for among the first MAX_GROUPS + 1 eigenvalues
MIN_IMAGES = 2 * NEIGHBOURS  # fewer explanations than this in a class make one group


@dataclass
class Grouping:
    groups: np.ndarray  # (n,) group per explanation, 0 the largest
    eigenvalues: list[float]  # the normalised Laplacian's smallest, from which the number of groups was chosen
    sampled: int  # explanations the groups were found on


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
    """Group the rows of `features` (one normalised map per explanation of a class)."""
    n = len(features)
    if n < MIN_IMAGES or not np.ptp(features, axis=0).any():  # too few, or all alike (say, all blind): one group
        return Grouping(np.zeros(n, dtype=np.int64), [], n)
    from sklearn.decomposition import PCA
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.RandomState(seed)
    sample = np.sort(rng.choice(n, SAMPLE, replace=False)) if n > SAMPLE else np.arange(n)
    components = min(COMPONENTS, features.shape[1], len(sample) - 1)
    reduce = PCA(n_components=components, random_state=seed).fit(features[sample])
    points = reduce.transform(features[sample])
    sample_groups, eigenvalues = spectral_groups(points, seed)
    groups = np.empty(n, dtype=np.int64)
    groups[sample] = sample_groups
    if len(sample) < n:
        rest = np.setdiff1d(np.arange(n), sample)
        nearest = KNeighborsClassifier(n_neighbors=NEIGHBOURS).fit(points, sample_groups)
        for start in range(0, len(rest), 20_000):  # bounded memory for the distance blocks
            part = rest[start:start + 20_000]
            groups[part] = nearest.predict(reduce.transform(features[part]))
    # number the groups by size, largest first, so that group 0 is the class's usual way of looking
    sizes = np.bincount(groups)
    order = np.argsort(-sizes, kind="stable")
    renumber = np.empty_like(order)
    renumber[order] = np.arange(len(order))
    return Grouping(renumber[groups], eigenvalues, len(sample))


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

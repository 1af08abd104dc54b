"""Typicality-based cold start (TypiClust): the most typical image of each uncovered cluster of the pool.

Hacohen, Dekel & Weinshall 2022, "Active Learning on a Budget: Opposite Strategies Suit High and Low Budgets"
(ICML). With few labels, the best first picks are typical (dense-region) points spread over the data: cluster
the pool (labeled + candidates) into |L| + B clusters by k-means, then, from the largest clusters that hold the
fewest labeled points, take the point of highest typicality, the inverse mean distance to its K nearest
neighbours within the cluster. The constants are those of the authors' code (github.com/avihu111/TypiClust,
`deep-al/pycls/al/typiclust.py`): K = 20 (capped at half the cluster), clusters of at most 5 points skipped,
at most 500 clusters, sklearn KMeans up to 50 clusters and MiniBatchKMeans above.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.neighbors import NearestNeighbors

TYPICALITY_NEIGHBOURS = 20
MIN_CLUSTER_SIZE = 5
MAX_CLUSTERS = 500
# The authors' code switches to MiniBatchKMeans above this many clusters (full k-means gets slow).
_FULL_KMEANS_UP_TO = 50


def get_typicality_scores(embeddings: np.ndarray, neighbours: int = TYPICALITY_NEIGHBOURS) -> np.ndarray:
    """Typicality (N,) of each row of `embeddings` (N, D): 1 / (mean Euclidean distance to its `neighbours`
    nearest other rows + 1e-5), as the paper's eq. 3. High = typical (dense region); not bounded above."""
    emb = np.asarray(embeddings, dtype=np.float64)
    if emb.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (N, D); got shape {emb.shape}")
    n = emb.shape[0]
    if n < 2:
        return np.ones(n)
    k = max(1, min(neighbours, n - 1))
    # +1: each row's nearest neighbour is itself (distance 0), left out of the mean.
    distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(emb).kneighbors(emb)
    return 1.0 / (distances[:, 1:].mean(axis=1) + 1e-5)


def _cluster(emb: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    if n_clusters <= _FULL_KMEANS_UP_TO:
        model = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed)
    else:
        model = MiniBatchKMeans(n_clusters=n_clusters, n_init=3, batch_size=4096, random_state=seed)
    return model.fit_predict(emb).astype(np.int64)


def check_cold_start_inputs(
    embeddings: np.ndarray, k: int, labeled: np.ndarray | None
) -> tuple[np.ndarray, int, np.ndarray]:
    """(candidates as float64 (N, D), k capped at N, labeled points (M, D), M may be 0) for a cold-start
    selection; ValueError for non-finite or non-2-D embeddings, a negative k or labeled points of other dims."""
    cand = np.asarray(embeddings, dtype=np.float64)
    if cand.ndim != 2 or not np.all(np.isfinite(cand)):
        raise ValueError(f"embeddings must be a finite 2-D array (N, D); got shape {cand.shape}")
    if k < 0:
        raise ValueError(f"k must be >= 0; got {k}")
    known = np.zeros((0, cand.shape[1])) if labeled is None or len(labeled) == 0 else np.asarray(labeled, float)
    if known.shape[1] != cand.shape[1]:
        raise ValueError(f"labeled has {known.shape[1]} dims but embeddings has {cand.shape[1]}")
    return cand, min(int(k), cand.shape[0]), known


def select_typical(
    embeddings: np.ndarray,
    k: int,
    *,
    labeled: np.ndarray | None = None,
    seed: int = 0,
    neighbours: int = TYPICALITY_NEIGHBOURS,
) -> np.ndarray:
    """Indices of `k` rows of candidate `embeddings` (N, D) by TypiClust, in pick order: (min(k, N),) int64.

    `labeled` (L, D) are embeddings of records already labeled (or pushed): they count in the clustering and
    make their clusters "covered", so picks go to the clusters nobody has labeled yet. Each pick is the most
    typical candidate of the cluster with the fewest labeled points, the largest first; a cluster of at most
    MIN_CLUSTER_SIZE points is skipped unless every cluster is that small (a tiny pool).
    """
    cand, k, known = check_cold_start_inputs(embeddings, k, labeled)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    n = cand.shape[0]
    everything = np.concatenate([cand, known])
    n_clusters = min(len(known) + k, MAX_CLUSTERS, len(everything))
    clusters = _cluster(everything, n_clusters, seed)
    sizes = np.bincount(clusters, minlength=n_clusters)
    covered = np.bincount(clusters[n:], minlength=n_clusters)
    usable = np.flatnonzero(sizes > MIN_CLUSTER_SIZE)
    if usable.size == 0:
        usable = np.arange(n_clusters)
    available = clusters[:n].copy()
    picked: list[int] = []
    while len(picked) < k:
        open_ = [c for c in usable if np.any(available == c)]
        if not open_:  # every usable cluster emptied: the small ones give the rest
            usable, open_ = np.arange(n_clusters), [c for c in range(n_clusters) if np.any(available == c)]
        # Fewest labeled points first, then the largest cluster (the authors' sort), then the lowest id.
        best = min(open_, key=lambda c: (covered[c], -sizes[c], c))
        members = np.flatnonzero(clusters == best)
        members_cand = np.flatnonzero(available == best)
        typicality = get_typicality_scores(everything[members], min(neighbours, max(1, len(members) // 2)))
        score = dict(zip(members.tolist(), typicality.tolist(), strict=True))
        pick = int(max(members_cand, key=lambda i: (score[int(i)], -int(i))))
        picked.append(pick)
        available[pick] = -1
        covered[best] += 1
    return np.asarray(picked, dtype=np.int64)

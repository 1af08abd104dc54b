"""Coverage-based cold start (ProbCover): the candidates whose delta-balls cover the most of the pool not yet covered.

Yehuda, Dekel, Hacohen & Weinshall 2022, "Active Learning Through a Covering Lens" (NeurIPS). In a
self-supervised embedding space, each point covers the points within distance delta of it; a batch is chosen by
greedy maximum coverage: repeatedly the candidate whose ball holds the most uncovered points, counting the
balls of what is already labeled as covered. The paper's delta (Section 4.1) is the largest radius at which
purity stays >= alpha = 0.95, purity being the share of points whose ball holds only points of their own
k-means cluster, with k = the number of classes. Embeddings are L2-normalised first, as the authors' code
(github.com/avihu111/TypiClust, `deep-al/pycls/al/prob_cover.py`) does. Once every point is covered, the rest
of the batch is drawn at random among the candidates, as that code does.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.cluster import KMeans
from sklearn.neighbors import NearestNeighbors

from labeling.typicality import check_cold_start_inputs

# The paper's purity threshold alpha (Section 4.1: "we choose the largest delta for which purity >= 0.95").
PURITY = 0.95


def _normalise(embeddings: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings / np.where(norms > 0, norms, 1.0)


def find_pure_radius(
    embeddings: np.ndarray, n_classes: int, *, purity: float = PURITY, seed: int = 0
) -> tuple[float, np.ndarray]:
    """(delta, pseudo-labels (N,)): the largest ball radius at which at least `purity` of the rows of
    `embeddings` (N, D, L2-normalised here) have balls holding only rows of their own k-means cluster
    (k = `n_classes`). A row's ball of radius delta (points strictly closer than delta) is pure exactly when
    delta <= its distance to the nearest row of another cluster, so delta is that distance's lower
    (1 - purity) quantile: no grid search. One cluster (or n_classes 1): every ball is pure, delta = the
    largest distance to a nearest neighbour."""
    emb = _normalise(np.asarray(embeddings, dtype=np.float64))
    if emb.ndim != 2 or len(emb) < 2 or not np.all(np.isfinite(emb)):
        raise ValueError(f"embeddings must be a finite 2-D array of >= 2 rows; got shape {emb.shape}")
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1; got {n_classes}")
    k = min(n_classes, len(emb))
    pseudo = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(emb) if k > 1 else np.zeros(len(emb), int)
    present = np.unique(pseudo)
    if len(present) < 2:
        gaps = NearestNeighbors(n_neighbors=2).fit(emb).kneighbors(emb)[0][:, 1]
        return float(gaps.max()), pseudo.astype(np.int64)
    foreign = np.empty(len(emb))
    for c in present:
        inside = pseudo == c
        foreign[inside] = NearestNeighbors(n_neighbors=1).fit(emb[~inside]).kneighbors(emb[inside])[0][:, 0]
    delta = float(np.sort(foreign)[int(np.floor((1.0 - purity) * len(foreign) + 1e-9))])
    return delta, pseudo.astype(np.int64)


def _ball_graph(emb: np.ndarray, delta: float) -> sparse.csr_matrix:
    """(N, N) 0/1 matrix: row i marks the points closer than `delta` to point i (itself included)."""
    # radius_neighbors keeps distances <= radius; the ball of find_pure_radius is open (< delta).
    neighbours = NearestNeighbors(radius=float(np.nextafter(delta, 0.0))).fit(emb)
    graph = neighbours.radius_neighbors_graph(emb, mode="connectivity")
    graph = graph.tocsr().astype(np.int64)
    graph.setdiag(1)  # a point covers itself even when delta is 0
    graph.eliminate_zeros()
    return graph.tocsr()


def select_covering(
    embeddings: np.ndarray,
    k: int,
    *,
    n_classes: int,
    labeled: np.ndarray | None = None,
    delta: float | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Indices of `k` rows of candidate `embeddings` (N, D) by ProbCover, in pick order: (min(k, N),) int64.

    `labeled` (L, D), embeddings of records already labeled (or pushed), count in delta's choice and cover their
    balls from the start. `delta` None: find_pure_radius over candidates + labeled with `n_classes` k-means
    clusters (the number of classes of the label set). Each pick is the candidate whose ball holds the most
    uncovered points (ties: the lowest index); once nothing is left uncovered, seeded random candidates.
    """
    cand, k, known = check_cold_start_inputs(embeddings, k, labeled)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    n = cand.shape[0]
    everything = _normalise(np.concatenate([cand, known]))
    if delta is None:
        delta = find_pure_radius(everything, n_classes, seed=seed)[0] if len(everything) > 1 else 0.0
    graph = _ball_graph(everything, delta)
    covered = np.zeros(len(everything), dtype=bool)
    if len(known):
        covered[graph[n:].indices] = True
    # degree[i]: uncovered points in candidate i's ball. The graph is symmetric, so covering points Y lowers
    # the degree of every point whose ball holds one of them by the column sums of graph[Y].
    degree = np.asarray(graph[:n][:, ~covered].sum(axis=1)).ravel()
    rng = np.random.default_rng(seed)
    free = np.ones(n, dtype=bool)
    picked: list[int] = []
    while len(picked) < k:
        gains = np.where(free, degree, -1)
        if gains.max() <= 0:
            rest = np.flatnonzero(free)
            picked.extend(rng.permutation(rest)[: k - len(picked)].tolist())
            break
        pick = int(np.argmax(gains))
        picked.append(pick)
        free[pick] = False
        ball = graph.indices[graph.indptr[pick] : graph.indptr[pick + 1]]
        fresh = ball[~covered[ball]]
        covered[fresh] = True
        degree -= np.asarray(graph[fresh][:, :n].sum(axis=0)).ravel().astype(degree.dtype)
    return np.asarray(picked, dtype=np.int64)

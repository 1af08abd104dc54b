"""Active-learning selection: cold-start embeddings, uncertainty, core-set and hybrid picks, guards, stopping."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from labeling.probcover import select_covering
from labeling.typicality import select_typical

# Thumbnail side and histogram bins of the cold-start embedding: 8x8 RGB (192 values) is the classic
# "tiny image" descriptor (Torralba et al. 2008, at a smaller size); 8x4x4 HSV bins follow the usual
# hue-heavy split of colour histograms. Together 320 dims, cheap enough for a pool of 10^5 images.
_THUMB = 8
_HSV_BINS = (8, 4, 4)
UNCERTAINTY_METHODS = ("least_confidence", "margin", "entropy")
# Batch strategies over arrays; labeling.rounds maps the pipeline's strategy names onto these.
BATCH_STRATEGIES = (
    "random",
    "diversity",
    "typiclust",
    "probcover",
    "least-confidence",
    "margin",
    "entropy",
    "coreset",
    "hybrid",
    "uncertainty",
)
MODEL_STRATEGIES = ("least-confidence", "margin", "entropy", "coreset", "hybrid", "uncertainty")
# Stabilizing predictions (Bloodgood & Vijay-Shanker 2009, "A Method for Stopping Active Learning Based on
# Stabilizing Predictions"): stop once Cohen's kappa between consecutive models' predictions on a stop set
# averages above 0.99 over the last 3 rounds; both numbers are the paper's defaults.
STOP_KAPPA = 0.99
STOP_WINDOW = 3
# Rows per block when measuring distances to the labeled set, so an (N, L) matrix never exceeds ~64 MB.
_BLOCK_ROWS = 2048


def compute_cheap_embeddings(images: list[bytes]) -> np.ndarray:
    """Embed encoded images without a model: 8x8 RGB thumbnail + HSV histogram, L2-normalised.

    Returns (N, 320) float32. An image that cannot be decoded raises ValueError naming its index,
    so a broken file is never embedded as zeros by accident.
    """
    dim = _THUMB * _THUMB * 3 + int(np.prod(_HSV_BINS))
    out = np.zeros((len(images), dim), dtype=np.float32)
    for i, data in enumerate(images):
        try:
            with Image.open(io.BytesIO(data)) as img:
                rgb = img.convert("RGB")
                rgb.draft("RGB", (64, 64))
                thumb = np.asarray(rgb.resize((_THUMB, _THUMB), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
                small = rgb.resize((64, 64), Image.Resampling.BILINEAR)
                hsv = np.asarray(small.convert("HSV"), dtype=np.float32).reshape(-1, 3)
        except Exception as exc:
            raise ValueError(f"image {i} cannot be decoded: {exc}") from exc
        hist, _ = np.histogramdd(hsv, bins=_HSV_BINS, range=[(0, 256)] * 3)
        hist = hist.ravel() / max(hist.sum(), 1.0)
        # Centre the thumbnail so uniform brightness does not dominate the cosine geometry.
        thumb = thumb.ravel() - thumb.mean()
        vec = np.concatenate([thumb, hist.astype(np.float32)])
        norm = np.linalg.norm(vec)
        out[i] = vec / norm if norm > 0 else vec
    return out


def _check_matrix(name: str, array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D); got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _check_k(k: int, n: int) -> int:
    if k < 0:
        raise ValueError(f"k must be >= 0; got {k}")
    return min(int(k), n)


def select_diverse(embeddings: np.ndarray, k: int, *, seed: int = 0) -> np.ndarray:
    """Indices of `k` rows of `embeddings` (N, D) spread out by k-center greedy (Sener & Savarese 2018).

    Starts from a seeded random row, then repeatedly adds the row farthest from everything picked.
    Returns (min(k, N),) int64, in pick order.
    """
    emb = _check_matrix("embeddings", embeddings).astype(np.float64, copy=False)
    n = emb.shape[0]
    k = _check_k(k, n)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    start = int(np.random.default_rng(seed).integers(n))
    return _k_center_from(emb, k, start=start)


def get_uncertainty_scores(probs: np.ndarray, method: str = "margin") -> np.ndarray:
    """Uncertainty of each row of class probabilities `probs` (N, K), in [0, 1]; 1 = most uncertain.

    - least_confidence: (1 - max p) * K / (K - 1)
    - margin: 1 - (p_top1 - p_top2)
    - entropy: H(p) / log K
    (Settles 2009, "Active Learning Literature Survey", §3.1.) Rows must sum to 1 (within 1e-3).
    """
    p = _check_matrix("probs", probs).astype(np.float64, copy=False)
    if method not in UNCERTAINTY_METHODS:
        raise ValueError(f"unknown uncertainty method {method!r}; use one of {UNCERTAINTY_METHODS}")
    n, k = p.shape
    if k < 2:
        raise ValueError(f"probs needs at least 2 classes; got {k}")
    if np.any(p < 0) or (n and not np.allclose(p.sum(axis=1), 1.0, atol=1e-3)):
        raise ValueError("probs rows must be non-negative and sum to 1")
    if method == "least_confidence":
        scores = (1.0 - p.max(axis=1)) * k / (k - 1)
    elif method == "margin":
        top2 = np.sort(p, axis=1)[:, -2:]
        scores = 1.0 - (top2[:, 1] - top2[:, 0])
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.where(p > 0, np.log(p), 0.0)
        scores = -(p * logs).sum(axis=1) / np.log(k)
    return np.clip(scores, 0.0, 1.0)


def select_uncertain(
    probs: np.ndarray,
    k: int,
    *,
    embeddings: np.ndarray | None = None,
    pool_factor: int = 3,
    method: str = "margin",
) -> np.ndarray:
    """Indices of `k` rows to label next: most uncertain first, diversified when embeddings are given.

    Takes the k * pool_factor most uncertain rows of `probs` (N, K), then, with `embeddings` (N, D),
    k-center greedy over that pool so near-identical uncertain items are not all picked
    (the "uncertainty then diversity" recipe of Kirsch et al. 2019 / Ash et al. 2020, simplified).
    pool_factor 3 is a common choice in those baselines. Returns (min(k, N),) int64.
    """
    scores = get_uncertainty_scores(probs, method)
    n = scores.shape[0]
    k = _check_k(k, n)
    if pool_factor < 1:
        raise ValueError(f"pool_factor must be >= 1; got {pool_factor}")
    # Stable sort on -score so equal scores keep input order (deterministic).
    order = np.argsort(-scores, kind="stable")
    if embeddings is None:
        return order[:k].astype(np.int64)
    emb = _check_matrix("embeddings", embeddings)
    if emb.shape[0] != n:
        raise ValueError(f"embeddings has {emb.shape[0]} rows but probs has {n}")
    pool = order[: min(n, k * pool_factor)]
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    # Seed k-center with the single most uncertain item rather than a random one.
    sub = emb[pool].astype(np.float64)
    picked_local = _k_center_from(sub, k, start=0)
    return pool[picked_local].astype(np.int64)


def _k_center_from(emb: np.ndarray, k: int, start: int) -> np.ndarray:
    picked = [start]
    sq_norms = np.einsum("ij,ij->i", emb, emb)
    dist = np.full(emb.shape[0], np.inf)
    for _ in range(k - 1):
        last = emb[picked[-1]]
        dist = np.minimum(dist, np.maximum(sq_norms - 2.0 * emb @ last + last @ last, 0.0))
        dist[picked[-1]] = -1.0
        picked.append(int(np.argmax(dist)))
    return np.asarray(picked, dtype=np.int64)


def _min_sq_distances(emb: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Squared distance of each row of `emb` (N, D) to its nearest row of `centers` (L, D), blockwise."""
    out = np.empty(emb.shape[0])
    c_norms = np.einsum("ij,ij->i", centers, centers)
    for start in range(0, emb.shape[0], _BLOCK_ROWS):
        block = emb[start : start + _BLOCK_ROWS]
        b_norms = np.einsum("ij,ij->i", block, block)
        d = b_norms[:, None] - 2.0 * block @ centers.T + c_norms[None, :]
        out[start : start + _BLOCK_ROWS] = np.maximum(d.min(axis=1), 0.0)
    return out


def select_coreset(embeddings: np.ndarray, k: int, *, labeled: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Indices of `k` rows of `embeddings` (N, D) by k-center greedy around what is already labeled.

    The core-set batch of Sener & Savarese 2018: each pick is the row farthest from the labeled
    rows `labeled` (L, D) and from every earlier pick, so the batch covers the regions the labeled
    set leaves empty. Without `labeled` it is `select_diverse`. Returns (min(k, N),) int64, in pick order.
    """
    emb = _check_matrix("embeddings", embeddings).astype(np.float64, copy=False)
    n = emb.shape[0]
    k = _check_k(k, n)
    if labeled is None or len(labeled) == 0:
        return select_diverse(emb, k, seed=seed)
    centers = _check_matrix("labeled", labeled).astype(np.float64, copy=False)
    if centers.shape[1] != emb.shape[1]:
        raise ValueError(f"labeled has {centers.shape[1]} dims but embeddings has {emb.shape[1]}")
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    dist = _min_sq_distances(emb, centers)
    sq_norms = np.einsum("ij,ij->i", emb, emb)
    picked: list[int] = []
    for _ in range(k):
        best = int(np.argmax(dist))
        picked.append(best)
        row = emb[best]
        dist = np.minimum(dist, np.maximum(sq_norms - 2.0 * emb @ row + row @ row, 0.0))
        dist[best] = -1.0
    return np.asarray(picked, dtype=np.int64)


def apply_class_quota(order: np.ndarray, predicted: np.ndarray, k: int, min_per_class: int) -> np.ndarray:
    """The first `k` of `order` (indices, most wanted first), but with at least `min_per_class` per predicted class.

    `predicted` (N,) is each row's predicted class. A class short of its quota takes its best-ranked
    rows of `order` in place of the worst-ranked picks of classes above quota, so a model that is
    sure of one class cannot starve the others (a class with fewer rows than the quota gets them all).
    Returns (min(k, len(order)),) int64 with no index twice, picks kept in `order`'s ranking.
    """
    order = np.asarray(order, dtype=np.int64)
    predicted = np.asarray(predicted)
    if len(set(order.tolist())) != len(order):
        raise ValueError("order must not hold an index twice")
    if min_per_class < 0:
        raise ValueError(f"min_per_class must be >= 0; got {min_per_class}")
    k = _check_k(k, len(order))
    chosen = list(order[:k])
    if min_per_class == 0 or k == 0:
        return np.asarray(chosen, dtype=np.int64)
    rest = list(order[k:])
    counts: dict = {}
    for i in chosen:
        counts[predicted[i]] = counts.get(predicted[i], 0) + 1
    for cls in sorted(set(predicted[order].tolist()), key=str):
        while counts.get(cls, 0) < min_per_class:
            spare = next((i for i in rest if predicted[i] == cls), None)
            # The worst-ranked pick whose class stays at or above quota after giving it up.
            victims = (j for j in reversed(range(len(chosen))) if counts[predicted[chosen[j]]] > min_per_class)
            victim = next(victims, None)
            if spare is None or victim is None:
                break
            counts[predicted[chosen[victim]]] -= 1
            del chosen[victim]
            rest.remove(spare)
            chosen.append(spare)
            counts[cls] = counts.get(cls, 0) + 1
    rank = {int(i): r for r, i in enumerate(order)}
    return np.asarray(sorted(chosen, key=lambda i: rank[int(i)]), dtype=np.int64)


def select_hybrid(
    probs: np.ndarray,
    embeddings: np.ndarray,
    k: int,
    *,
    labeled: np.ndarray | None = None,
    pool_factor: int = 3,
    method: str = "margin",
) -> np.ndarray:
    """Uncertainty pre-filter, then core-set: the default batch strategy once a model exists.

    Keeps the k * pool_factor most uncertain rows of `probs` (N, K), then picks `k` of them by
    k-center greedy over `embeddings` (N, D) around the already labeled rows `labeled` (L, D)
    (the "uncertainty then diversity" recipe of Kirsch et al. 2019 / Ash et al. 2020; pool_factor 3 as in
    select_uncertain, a common choice in those baselines). Returns (min(k, N),) int64, in pick order.
    """
    scores = get_uncertainty_scores(probs, method)
    emb = _check_matrix("embeddings", embeddings)
    n = scores.shape[0]
    if emb.shape[0] != n:
        raise ValueError(f"embeddings has {emb.shape[0]} rows but probs has {n}")
    if pool_factor < 1:
        raise ValueError(f"pool_factor must be >= 1; got {pool_factor}")
    k = _check_k(k, n)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    pool = np.argsort(-scores, kind="stable")[: min(n, k * pool_factor)]
    if labeled is None or len(labeled) == 0:
        # No labeled rows to measure from: seed k-center with the most uncertain row.
        return pool[_k_center_from(emb[pool].astype(np.float64), k, start=0)].astype(np.int64)
    return pool[select_coreset(emb[pool], k, labeled=labeled)].astype(np.int64)


def select_batch(
    strategy: str,
    k: int,
    *,
    n: int,
    probs: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
    labeled_embeddings: np.ndarray | None = None,
    cold_embeddings: np.ndarray | None = None,
    min_per_class: int = 0,
    pool_factor: int = 3,
    seed: int = 0,
    n_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One batch of `k` of `n` candidates by `strategy` (one of BATCH_STRATEGIES): (indices, priorities).

    Model strategies need `probs` (n, K) and, for coreset/hybrid/uncertainty, the model's `embeddings`
    (n, D) (and `labeled_embeddings` (L, D) of what is already labeled); "diversity", "typiclust" and "probcover"
    need `cold_embeddings` (n, D) (self-supervised ones, or compute_cheap_embeddings); "typiclust" and "probcover"
    count `labeled_embeddings` (in the same space) as covering their clusters / balls; "probcover" also needs
    `n_classes` (the label set's size: its k-means pseudo-labels choose delta); "random" needs nothing. With
    `min_per_class` > 0 and `probs`, each predicted class gets at least that many picks when it has them.
    Priorities are in [0, 1], 1 = label first: the uncertainty score for uncertainty strategies,
    1 - rank / k for the others. No index appears twice.
    """
    if strategy not in BATCH_STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {BATCH_STRATEGIES}")
    k = _check_k(k, n)
    if strategy in MODEL_STRATEGIES and probs is None:
        raise ValueError(f"strategy {strategy!r} needs model probabilities")
    if strategy in ("coreset", "hybrid", "uncertainty") and embeddings is None:
        raise ValueError(f"strategy {strategy!r} needs model embeddings")
    if strategy in ("diversity", "typiclust", "probcover") and cold_embeddings is None:
        raise ValueError(f"strategy {strategy!r} needs cold-start embeddings")
    if strategy == "probcover" and not n_classes:
        raise ValueError("strategy 'probcover' needs n_classes (the number of labels)")
    for name, array in (("probs", probs), ("embeddings", embeddings), ("cold_embeddings", cold_embeddings)):
        if array is not None and len(array) != n:
            raise ValueError(f"{name} has {len(array)} rows but there are {n} candidates")
    # Rank every candidate (most wanted first), so a class quota can reach beyond the first k.
    if strategy == "random":
        order = np.random.default_rng(seed).permutation(n)
    elif strategy == "diversity":
        order = select_diverse(cold_embeddings, n if min_per_class else k, seed=seed)
    elif strategy == "typiclust":
        order = select_typical(cold_embeddings, k, labeled=labeled_embeddings, seed=seed)
    elif strategy == "probcover":
        order = select_covering(cold_embeddings, k, n_classes=n_classes, labeled=labeled_embeddings, seed=seed)
    elif strategy in ("least-confidence", "margin", "entropy"):
        scores = get_uncertainty_scores(probs, strategy.replace("-", "_"))
        order = np.argsort(-scores, kind="stable")
    elif strategy == "coreset":
        order = select_coreset(embeddings, n if min_per_class else k, labeled=labeled_embeddings, seed=seed)
    elif strategy == "hybrid":
        head = select_hybrid(probs, embeddings, k, labeled=labeled_embeddings, pool_factor=pool_factor)
        order = _then_rest(head, np.argsort(-get_uncertainty_scores(probs, "margin"), kind="stable"))
    else:
        head = select_uncertain(probs, k, embeddings=embeddings, pool_factor=pool_factor)
        order = _then_rest(head, np.argsort(-get_uncertainty_scores(probs, "margin"), kind="stable"))
    if min_per_class and probs is not None:
        picks = apply_class_quota(order, np.asarray(probs).argmax(axis=1), k, min_per_class)
    else:
        picks = np.asarray(order[:k], dtype=np.int64)
    if strategy in ("least-confidence", "margin", "entropy", "hybrid", "uncertainty"):
        method = "margin" if strategy in ("hybrid", "uncertainty") else strategy.replace("-", "_")
        priorities = get_uncertainty_scores(probs, method)[picks]
    else:
        priorities = 1.0 - np.arange(len(picks)) / max(len(picks), 1)
    return picks.astype(np.int64), priorities.astype(np.float64)


def _then_rest(head: np.ndarray, ranking: np.ndarray) -> np.ndarray:
    taken = set(head.tolist())
    return np.concatenate([head, np.asarray([i for i in ranking if i not in taken], dtype=np.int64)])


def compute_prediction_agreement(previous: np.ndarray, current: np.ndarray) -> float:
    """Cohen's kappa between two models' predicted classes on the same stop set (N,), in [-1, 1]; 1 = unchanged.

    Low means the newest labels still move the model; this is the stabilizing-predictions signal.
    """
    a = np.asarray(previous)
    b = np.asarray(current)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"previous and current must be non-empty 1-D arrays of equal length; got {a.shape}, {b.shape}")
    observed = float(np.mean(a == b))
    classes = np.union1d(a, b)
    expected = float(sum(np.mean(a == c) * np.mean(b == c) for c in classes))
    if expected >= 1.0:
        return 1.0
    return (observed - expected) / (1.0 - expected)


def should_stop(agreements: list[float], *, threshold: float = STOP_KAPPA, window: int = STOP_WINDOW) -> bool:
    """True when the mean of the last `window` consecutive-model kappas exceeds `threshold` (see STOP_KAPPA)."""
    if window < 1:
        raise ValueError(f"window must be >= 1; got {window}")
    if len(agreements) < window:
        return False
    return float(np.mean(agreements[-window:])) > threshold

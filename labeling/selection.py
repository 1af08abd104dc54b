"""Active-learning selection: cheap cold-start embeddings, uncertainty scores, and diverse (k-center) picks."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# Thumbnail side and histogram bins of the cold-start embedding: 8x8 RGB (192 values) is the classic
# "tiny image" descriptor (Torralba et al. 2008, at a smaller size); 8x4x4 HSV bins follow the usual
# hue-heavy split of colour histograms. Together 320 dims, cheap enough for a pool of 10^5 images.
_THUMB = 8
_HSV_BINS = (8, 4, 4)
UNCERTAINTY_METHODS = ("least_confidence", "margin", "entropy")


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

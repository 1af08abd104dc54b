"""Active-learning selection for detection: an image-level uncertainty from a detector's box scores, then diversity.

Brust, Käding & Denzler 2018, "Active Learning for Deep Object Detection": score each detection's uncertainty,
then aggregate the detections of an image (max, mean or sum). For a detector whose scores are per-class
sigmoids (CenterNet) a detection is a two-way decision, object vs background, so its margin uncertainty is
1 - |2s - 1|: 1 at s = 0.5, 0 at a sure 0 or 1. The default batch ("distinct") takes the images in that order
and skips a near-duplicate of one taken or labeled; "hybrid" diversifies as labeling.selection's hybrid does for
classes (the most uncertain k x pool_factor, k-center greedy among them), which measured no better than random.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from labeling.selection import select_coreset

BOX_UNCERTAINTY_METHODS = ("max", "mean", "sum")
# The aggregation labeling.rounds uses. Measured in bench/detect_efficiency.py (a start model on 16 images, a
# pool with 30% hard images of 2-3 small dim shapes): of the 16 most uncertain images "sum" took 16 and 7 hard
# ones (two seeds), "max" 9 and 0, "mean" 0 and 4; a weak detector's peaks on a hard image are many and
# middling, while the single peak of an easy image sits near 0.5 as well, so only the sum tells them apart.
DEFAULT_BOX_UNCERTAINTY = "sum"
# The model strategies of labeling.rounds that have a detection meaning. "margin" ranks by the image-level
# uncertainty alone (the per-box measure is the margin between object and background).
# What "auto" runs for a detector once one is trained: the arm that measured best in bench/detect_efficiency.py
# (QUICK, 4 seeds, mAP@0.5: distinct 0.825 ± 0.067 = margin, hybrid 0.795 ± 0.063, random 0.780 ± 0.025).
DEFAULT_DETECT_STRATEGY = "distinct"
DETECT_STRATEGIES = ("distinct", "hybrid", "uncertainty", "margin", "coreset")
# A candidate closer than this share of the median pairwise distance among the uncertain few (to an image picked
# or labeled) is a near-duplicate for "distinct": a re-crawl, a burst frame. Distinct generated images sit at
# 0.5-1.5 medians apart, so the cut only bites on copies and leaves "distinct" the plain ranking there.
DUPLICATE_DISTANCE_SHARE = 0.1


def get_box_uncertainty_scores(box_scores: Sequence[Sequence[float]], method: str = "max") -> np.ndarray:
    """Image-level uncertainty (N,) in [0, 1], 1 = most uncertain, of N images' detection scores (each a list in
    [0, 1]): the max, mean or sum over an image's detections of 1 - |2s - 1| (Brust et al. 2018). "sum" favours
    images with many doubtful objects; it is divided by the largest sum of the N images to stay in [0, 1]. An
    image with no detection scores 0 (the model saw nothing there to doubt)."""
    if method not in BOX_UNCERTAINTY_METHODS:
        raise ValueError(f"unknown box uncertainty method {method!r}; use one of {BOX_UNCERTAINTY_METHODS}")
    out = np.zeros(len(box_scores))
    for i, scores in enumerate(box_scores):
        s = np.asarray(scores if scores is not None else [], np.float64)
        if s.size and (np.any(~np.isfinite(s)) or np.any((s < 0) | (s > 1))):
            raise ValueError(f"image {i}: detection scores must be in [0, 1]")
        if not s.size:
            continue
        per_box = 1.0 - np.abs(2.0 * s - 1.0)
        out[i] = per_box.max() if method == "max" else (per_box.mean() if method == "mean" else per_box.sum())
    if method == "sum" and out.max(initial=0.0) > 0:
        out = out / out.max()
    return np.clip(out, 0.0, 1.0)


def select_detection_batch(
    strategy: str,
    k: int,
    uncertainty: np.ndarray,
    *,
    embeddings: np.ndarray | None = None,
    labeled_embeddings: np.ndarray | None = None,
    pool_factor: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """(indices, priorities in [0, 1], 1 = label first) of `k` of the N images with image-level `uncertainty`
    (N,), as labeling.selection does for classes: "margin" ranks by it alone; "distinct" takes the k x pool_factor
    most uncertain in rank order, skipping near-duplicates of a pick or of `labeled_embeddings`; "hybrid" keeps
    the k x pool_factor most uncertain and picks k among them by k-center greedy over `embeddings` (N, D) around
    `labeled_embeddings` (L, D) (seeded with the most uncertain image when nothing is labeled); "uncertainty"
    is hybrid without the labeled rows; "coreset" is k-center over all N around the labeled rows. Priorities
    are the uncertainty, except 1 - rank / k for coreset. No index appears twice."""
    if strategy not in DETECT_STRATEGIES:
        raise ValueError(f"strategy {strategy!r} has no detection meaning; use one of {DETECT_STRATEGIES}")
    scores = np.asarray(uncertainty, np.float64)
    n = len(scores)
    k = max(0, min(int(k), n))
    if strategy != "margin" and (embeddings is None or len(embeddings) != n):
        raise ValueError(f"strategy {strategy!r} needs one embedding per image ({n})")
    if pool_factor < 1:
        raise ValueError(f"pool_factor must be >= 1; got {pool_factor}")
    order = np.argsort(-scores, kind="stable")
    if strategy == "distinct":
        pool = order[: min(n, k * pool_factor)]
        picks = pool[_rank_distinct(np.asarray(embeddings, np.float64)[pool], k, labeled_embeddings)]
        return picks.astype(np.int64), scores[picks]
    if strategy == "uncertainty":
        labeled_embeddings = None
    if strategy == "margin" or k == 0:
        picks = order[:k]
    elif strategy == "coreset":
        picks = select_coreset(np.asarray(embeddings, np.float64), k, labeled=labeled_embeddings)
        return picks.astype(np.int64), 1.0 - np.arange(len(picks)) / max(len(picks), 1)
    else:
        pool = order[: min(n, k * pool_factor)]
        emb = np.asarray(embeddings, np.float64)[pool]
        if labeled_embeddings is None or len(labeled_embeddings) == 0:
            # k-center seeded with the most uncertain image: its own row counts as the first centre.
            rest = select_coreset(emb[1:], k - 1, labeled=emb[:1]) + 1 if k > 1 else np.zeros(0, np.int64)
            picks = pool[np.concatenate([[0], rest]).astype(np.int64)]
        else:
            picks = pool[select_coreset(emb, k, labeled=np.asarray(labeled_embeddings, np.float64))]
    return picks.astype(np.int64), scores[picks]


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (A, B) between the rows of a (A, D) and b (B, D), without an (A, B, D) intermediate."""
    sq = np.einsum("ij,ij->i", a, a)[:, None] + np.einsum("ij,ij->i", b, b)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def _rank_distinct(ranked: np.ndarray, k: int, labeled: np.ndarray | None) -> np.ndarray:
    """Indices of `k` of the `ranked` embeddings (M, D), most uncertain first: each row in rank order unless it is
    a near-duplicate (DUPLICATE_DISTANCE_SHARE) of a row taken or of `labeled` (L, D); skipped rows fill what is
    left. Diversity is a tie-breaker here, not the aim: k-center over the uncertain few spends the batch on
    outliers (bench/detect_efficiency.py)."""
    m = len(ranked)
    dist = _distances(ranked, ranked)
    off_diagonal = dist[~np.eye(m, dtype=bool)]
    cut = DUPLICATE_DISTANCE_SHARE * float(np.median(off_diagonal)) if off_diagonal.size else 0.0
    near = np.full(m, np.inf)
    if labeled is not None and len(labeled):
        near = _distances(ranked, np.asarray(labeled, np.float64)).min(axis=1)
    taken: list[int] = []
    for i in range(m):
        if len(taken) == k:
            break
        if near[i] >= cut and (not taken or dist[i, taken].min() >= cut):
            taken.append(i)
    skipped = np.setdiff1d(np.arange(m), taken)  # sorted: the most uncertain duplicates fill first
    return np.concatenate([np.asarray(taken, np.int64), skipped[: k - len(taken)]]).astype(np.int64)


def detection_arrays(
    predictions: pa.Table, ids: Sequence[str]
) -> tuple[list[str], list[list[float]], np.ndarray | None]:
    """(the `ids` a detector's predictions cover, in order; their detection scores; their embeddings (n, D), or
    None unless every one has an embedding)."""
    by_id = {rid: i for i, rid in enumerate(predictions.column("record_id").to_pylist())}
    scored = [rid for rid in ids if rid in by_id]
    rows = pa.array([by_id[rid] for rid in scored], pa.int64())
    boxes = predictions.column("boxes").take(rows).to_pylist()
    scores = [[b["score"] for b in image or [] if b.get("score") is not None] for image in boxes]
    values = predictions.column("embedding").take(rows).to_pylist() if "embedding" in predictions.column_names else []
    embeddings = np.asarray(values, np.float64) if values and all(v is not None for v in values) else None
    return scored, scores, embeddings

"""Boxes from several annotators made one: IoU matching (Hungarian) and weighted boxes fusion with a label vote."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from corpus.boxes import BoxSet, compute_iou

# Boxes of two annotators closer than this IoU are taken for one object: 0.55 is the iou_thr that Solovyev
# et al. (2021, "Weighted boxes fusion: Ensembling boxes from different object detection models", Image and
# Vision Computing 107) found best on COCO and ensemble-boxes uses as its default.
FUSION_IOU = 0.55


def match_boxes(
    first: BoxSet, second: BoxSet, iou_threshold: float, *, same_label: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matches of two box sets that maximise the summed IoU of the pairs at IoU >= iou_threshold
    (Hungarian assignment), keeping those pairs that overlap at all (and have the same label when
    `same_label`): (pairs (K, 2) of indices into first and second, their IoUs (K,))."""
    iou = compute_iou(first.xyxy, second.xyxy)
    if same_label and iou.size:
        iou = np.where(first.labels[:, None] == second.labels[None, :], iou, 0.0)
    if not iou.size:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0)
    # Pairs below the threshold count nothing, so the assignment never trades a match for a higher IoU sum.
    rows, cols = linear_sum_assignment(np.where(iou >= iou_threshold, iou, 0.0), maximize=True)
    keep = (iou[rows, cols] >= iou_threshold) & (iou[rows, cols] > 0)
    pairs = np.stack([rows[keep], cols[keep]], axis=1).astype(np.int64)
    return pairs, iou[rows[keep], cols[keep]]


@dataclass(frozen=True)
class FusedBoxes:
    """Fused boxes of one image, each score in [0, 1], low = doubtful. `support` (K,): the weighted share of
    annotators who drew the box (times their box scores). `label_share` (K,): the weighted share of its
    drawers who chose its label. `boxes.scores` = support x label_share: the share who drew this box with this
    label, its confidence. `members` (K, A): index of the box of annotator a in it, -1 if none."""

    boxes: BoxSet
    support: np.ndarray
    label_share: np.ndarray
    members: np.ndarray


def _vote(labels: list[str], weights: list[float]) -> tuple[str, float]:
    totals: dict[str, float] = {}
    for label, weight in zip(labels, weights, strict=True):
        totals[label] = totals.get(label, 0.0) + weight
    # Ties go to the label of the heaviest annotator, who comes first.
    best = max(totals, key=lambda label: (totals[label], -labels.index(label)))
    return best, totals[best] / sum(weights)


def fuse_boxes(
    annotations: Sequence[BoxSet],
    weights: Sequence[float] | None = None,
    *,
    iou_threshold: float = FUSION_IOU,
) -> FusedBoxes:
    """Weighted boxes fusion (Solovyev et al. 2021) of the boxes several annotators drew on one image.

    Differences from the detector-ensemble form, for people: one annotator adds at most one box to a cluster
    (each annotator's boxes are matched to the clusters by Hungarian assignment on IoU >= iou_threshold), and
    clusters are formed across labels with a weighted label vote, so that one annotator's wrong label does
    not split an object in two. Annotators are taken heaviest first; a cluster's corners are the mean of its
    members' corners weighted by annotator weight x box score, updated as members join. `weights` (A,): an
    annotator's reliability (e.g. its accuracy on gold tasks), default 1 each.
    """
    weights = np.ones(len(annotations)) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(weights) != len(annotations) or np.any(weights <= 0):
        raise ValueError(f"need one positive weight per annotator: {len(annotations)} annotators, weights {weights}")
    order = np.argsort(-weights, kind="stable")
    corners: list[np.ndarray] = []  # per cluster: the member corners, scaled by their weight
    mass: list[float] = []  # per cluster: the summed member weights x scores
    drawers: list[dict[int, int]] = []  # per cluster: annotator -> box index
    for a in order:
        own = annotations[a]
        fused = np.array([c / m for c, m in zip(corners, mass, strict=True)]).reshape(-1, 4)
        pairs, _ = match_boxes(
            own, BoxSet(fused, np.zeros(len(fused), dtype=object), np.ones(len(fused))), iou_threshold
        )
        matched = dict(zip(pairs[:, 0].tolist(), pairs[:, 1].tolist(), strict=True))
        for i in range(len(own.xyxy)):
            w = weights[a] * own.scores[i]
            if i in matched:
                k = matched[i]
                corners[k], mass[k] = corners[k] + w * own.xyxy[i], mass[k] + w
            else:
                corners.append(w * own.xyxy[i])
                mass.append(w)
                drawers.append({})
                k = len(drawers) - 1
            drawers[k][int(a)] = i
    return _assemble(annotations, weights, corners, mass, drawers)


def _assemble(
    annotations: Sequence[BoxSet],
    weights: np.ndarray,
    corners: list[np.ndarray],
    mass: list[float],
    drawers: list[dict[int, int]],
) -> FusedBoxes:
    members = np.full((len(drawers), len(annotations)), -1, dtype=np.int64)
    labels, shares = [], []
    for k, cluster in enumerate(drawers):
        # Drawers in the order they joined: heaviest first, which is how _vote breaks ties.
        names = [str(annotations[a].labels[i]) for a, i in cluster.items()]
        label, share = _vote(names, [float(weights[a]) for a in cluster])
        labels.append(label)
        shares.append(share)
        for a, i in cluster.items():
            members[k, a] = i
    xyxy = np.array([c / m for c, m in zip(corners, mass, strict=True)]).reshape(-1, 4)
    # Support as WBF's rescaled confidence: the summed weight x score of the drawers over all annotators' weight.
    support = np.minimum(np.asarray(mass, dtype=np.float64) / weights.sum(), 1.0)
    share = np.asarray(shares, dtype=np.float64)
    return FusedBoxes(BoxSet(xyxy, np.asarray(labels, dtype=object), support * share), support, share, members)


def keep_supported(fused: FusedBoxes, min_support: float) -> FusedBoxes:
    """The fused boxes whose support is at least `min_support`."""
    keep = fused.support >= min_support
    boxes = BoxSet(fused.boxes.xyxy[keep], fused.boxes.labels[keep], fused.boxes.scores[keep])
    return FusedBoxes(boxes, fused.support[keep], fused.label_share[keep], fused.members[keep])


def annotator_weights(names: Sequence[str], accuracy: Mapping[str, float] | None, floor: float = 0.05) -> np.ndarray:
    """Fusion weights (A,) from each annotator's estimated accuracy (e.g. on gold tasks), at least `floor`
    so that no one's boxes vanish; 1 each without estimates (an unknown annotator gets the mean)."""
    if not accuracy:
        return np.ones(len(names))
    mean = float(np.mean(list(accuracy.values())))
    return np.array([max(float(accuracy.get(name, mean)), floor) for name in names])

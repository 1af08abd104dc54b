"""Simulated box annotators: they redraw the true boxes with known noise (jitter, missed, extra, wrong label)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from corpus.boxes import boxes_to_arrays, build_boxes, xywh_to_xyxy, xyxy_to_xywh
from labeling.box_results import boxes_to_studio_result


@dataclass(frozen=True)
class BoxNoise:
    """How one annotator errs: corner jitter (sd, as a share of the box's side), P(miss a true box), mean extra
    boxes per image (Poisson), P(wrong label on a drawn box)."""

    jitter: float
    miss: float
    extra: float
    wrong: float


def box_noise_for(error_rate: float) -> BoxNoise:
    """The box noise of a crowd member whose error rate is `error_rate` (SimulatedAnnotator): a true box goes
    wrong with about that probability, half of it missed and half of it drawn with another label; extras at a
    quarter of the rate per image; corner jitter 2% of the side plus a quarter of the rate (a careless hand is
    also a shaky one). At 0.05/0.1/0.2 (the demo's crowd) most drawn boxes stay at IoU >= 0.7 of the truth."""
    if not 0.0 <= error_rate <= 1.0:
        raise ValueError(f"error_rate must be in [0, 1]; got {error_rate}")
    return BoxNoise(jitter=0.02 + error_rate / 4, miss=error_rate / 2, extra=error_rate / 4, wrong=error_rate / 2)


def draw_noisy_boxes(
    truth: Sequence[dict[str, Any]],
    noise: BoxNoise,
    classes: Sequence[str],
    size: tuple[int, int],
    rng: np.random.Generator,
) -> list[dict[str, Any]]:
    """One simulated annotator's boxes (rows of BOX_TYPE) of an image whose true boxes are `truth` on a
    size = (width, height) image: each true box kept with P(1 - miss), its corners jittered, its label
    swapped for another of `classes` with P(wrong); plus Poisson(extra) boxes of a random class anywhere."""
    width, height = size
    xywh, labels, _ = boxes_to_arrays(truth)
    keep = rng.random(len(labels)) >= noise.miss
    corners = xywh_to_xyxy(xywh)[keep]
    sides = np.tile(corners[:, 2:] - corners[:, :2], 2)
    corners = corners + rng.normal(0.0, noise.jitter, size=corners.shape) * sides
    drawn = []
    for label, flip in zip(np.asarray(labels, dtype=object)[keep], rng.random(int(keep.sum())), strict=True):
        others = [c for c in classes if c != label]
        drawn.append(str(others[int(rng.integers(len(others)))]) if flip < noise.wrong and others else str(label))
    for _ in range(int(rng.poisson(noise.extra))):
        side = rng.uniform(0.1, 0.3) * min(width, height)
        x, y = rng.uniform(0, width - side), rng.uniform(0, height - side)
        corners = np.vstack([corners, [x, y, x + side, y + side]])
        drawn.append(str(classes[int(rng.integers(len(classes)))]))
    corners = np.clip(corners, 0, [width, height, width, height])
    corners[:, 2:] = np.maximum(corners[:, 2:], np.minimum(corners[:, :2] + 1, [width, height]))
    corners[:, :2] = np.minimum(corners[:, :2], corners[:, 2:] - 1)
    return build_boxes(xyxy_to_xywh(corners), drawn, width, height)


def box_result(boxes: Sequence[dict[str, Any]], size: tuple[int, int]) -> list[dict[str, Any]]:
    """The Label Studio RectangleLabels result a person drawing `boxes` on a size = (width, height) image saves
    (labeling.label_config.build_box_label_config's tag names)."""
    return boxes_to_studio_result(boxes, size[0], size[1])

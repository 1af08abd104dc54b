"""Boxes in Label Studio's terms: RectangleLabels results (percent of the image) to and from rows of BOX_TYPE."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from corpus.boxes import build_boxes

RESULT_TYPE = "rectanglelabels"


def boxes_to_studio_result(
    boxes: Sequence[dict[str, Any]],
    width: int,
    height: int,
    *,
    from_name: str = "label",
    to_name: str = "image",
) -> list[dict[str, Any]]:
    """A Label Studio result list (an annotation's or a prediction's `result`) from rows of BOX_TYPE on a
    width x height image: x, y, width, height in percent of the image, rotation 0, the box's score where it
    has one (Label Studio shows a prediction region's score)."""
    result = []
    for i, box in enumerate(boxes):
        item: dict[str, Any] = {
            "id": f"{from_name}-{i}",
            "type": RESULT_TYPE,
            "from_name": from_name,
            "to_name": to_name,
            "original_width": int(width),
            "original_height": int(height),
            "image_rotation": 0,
            "value": {
                "x": 100.0 * box["x"] / width,
                "y": 100.0 * box["y"] / height,
                "width": 100.0 * box["w"] / width,
                "height": 100.0 * box["h"] / height,
                "rotation": 0,
                "rectanglelabels": [box["label"]],
            },
        }
        if box.get("score") is not None:
            item["score"] = float(box["score"])
        result.append(item)
    return result


def _envelope(x: float, y: float, w: float, h: float, degrees: float) -> tuple[float, float, float, float]:
    """The axis-aligned box around a rectangle turned `degrees` clockwise about its top-left corner, which is
    where Label Studio anchors a rotated rectangle's x, y."""
    if not degrees:
        return x, y, w, h
    theta = math.radians(degrees)
    cos, sin = math.cos(theta), math.sin(theta)
    corners = np.array([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]])
    turned = corners @ np.array([[cos, sin], [-sin, cos]]) + [x, y]
    x0, y0 = turned.min(axis=0)
    x1, y1 = turned.max(axis=0)
    return float(x0), float(y0), float(x1 - x0), float(y1 - y0)


def boxes_from_studio_result(
    result: Sequence[dict[str, Any]],
    width: int | None = None,
    height: int | None = None,
    *,
    from_name: str | None = None,
) -> tuple[list[dict[str, Any]], int, int]:
    """(rows of BOX_TYPE, width, height) from a Label Studio result list: its rectanglelabels items (of
    `from_name` when given; other items are ignored). The image size is each item's original_width/height,
    else `width`/`height`. A rotated rectangle becomes the axis-aligned box around it. An item without a
    size, a label, or whose sizes disagree raises ValueError naming the item's id."""
    xywh, labels, scores = [], [], []
    for item in result:
        if item.get("type") != RESULT_TYPE or (from_name is not None and item.get("from_name") != from_name):
            continue
        name = item.get("id", "?")
        value = item.get("value") or {}
        item_size = (item.get("original_width") or width, item.get("original_height") or height)
        if not item_size[0] or not item_size[1]:
            raise ValueError(f"result {name}: no original_width/original_height and no image size given")
        if (width and height) and (int(item_size[0]), int(item_size[1])) != (int(width), int(height)):
            raise ValueError(f"result {name}: image size {item_size} differs from {width}x{height}")
        width, height = int(item_size[0]), int(item_size[1])
        chosen = value.get("rectanglelabels") or []
        if len(chosen) != 1:
            raise ValueError(f"result {name}: needs exactly one label in value.rectanglelabels, got {chosen}")
        try:
            scales = (width, height, width, height)
            box = [float(value[k]) * f / 100.0 for k, f in zip(("x", "y", "width", "height"), scales, strict=True)]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"result {name}: value needs numeric x, y, width, height ({exc})") from exc
        xywh.append(_envelope(*box, float(value.get("rotation") or 0.0)))
        labels.append(str(chosen[0]))
        scores.append(item.get("score"))
    if not width or not height:
        raise ValueError("no rectanglelabels result and no image size given")
    has_scores = any(s is not None for s in scores)
    if has_scores and any(s is None for s in scores):
        raise ValueError("some rectanglelabels results have a score and others none")
    try:
        boxes = build_boxes(np.array(xywh).reshape(-1, 4), labels, width, height, scores if has_scores else None)
    except ValueError as exc:
        raise ValueError(f"rectanglelabels {exc}") from exc
    return boxes, width, height

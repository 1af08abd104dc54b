"""Boxes in other tools' terms: COCO bbox, YOLO label lines and Label Studio RectangleLabels, to and from rows
of BOX_TYPE (corpus.boxes); pure functions, shared by the exporters and the importers so both read alike."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from corpus.boxes import build_boxes

STUDIO_RESULT_TYPE = "rectanglelabels"
# Digits of a normalised YOLO coordinate: 9 decimals put the round trip within 5e-10 of the box (the tests
# ask 1e-6); Ultralytics writes 6, which is under a pixel only for images below 10^6 px a side.
YOLO_DECIMALS = 9


def coco_bbox(box: dict[str, Any]) -> list[float]:
    """COCO's bbox of a BOX_TYPE row: [x, y, w, h] in pixels, top-left corner first."""
    return [float(box["x"]), float(box["y"]), float(box["w"]), float(box["h"])]


def boxes_from_coco(
    annotations: Sequence[dict[str, Any]], names: dict[Any, str], width: int, height: int
) -> list[dict[str, Any]]:
    """Rows of BOX_TYPE from one image's COCO annotations (`names`: category id -> name). ValueError names the
    annotation (by its id) whose category is unknown, whose bbox is not 4 numbers, negative, empty or outside."""
    rows = []
    for ann in annotations:
        name = f"annotation {ann.get('id', '?')}"
        category = ann.get("category_id")
        if category not in names:
            raise ValueError(f"{name}: unknown category_id {category!r} (categories: {sorted(names, key=str)})")
        bbox = ann.get("bbox")
        if not isinstance(bbox, list | tuple) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
            raise ValueError(f"{name}: bbox must be 4 numbers [x, y, w, h], got {bbox!r}")
        if bbox[2] < 0 or bbox[3] < 0:
            raise ValueError(f"{name}: bbox {list(bbox)} has a negative width or height")
        try:
            rows.extend(build_boxes(np.array(bbox, dtype=np.float64), [names[category]], width, height))
        except ValueError as exc:
            raise ValueError(f"{name}: {str(exc).removeprefix('box 0: ')}") from None
    return rows


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def yolo_line(index: int, box: dict[str, Any]) -> str:
    """A YOLO label line `class cx cy w h` (class index, centre and size normalised to [0, 1])."""
    cx, cy = box["x_norm"] + box["w_norm"] / 2, box["y_norm"] + box["h_norm"] / 2
    values = " ".join(f"{v:.{YOLO_DECIMALS}f}" for v in (cx, cy, box["w_norm"], box["h_norm"]))
    return f"{index} {values}"


def boxes_from_yolo(text: str, names: Sequence[str], width: int, height: int) -> list[dict[str, Any]]:
    """Rows of BOX_TYPE from a YOLO label file's text on a width x height image (`names`: class index -> name).
    ValueError names the line (1-based) that is not `class cx cy w h`, has an unknown class, a negative size
    or a box outside the image."""
    xywh, labels = [], []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise ValueError(f"line {number}: needs 5 values 'class cx cy w h', got {len(fields)}: {line.strip()!r}")
        try:
            index, values = int(fields[0]), [float(v) for v in fields[1:]]
        except ValueError:
            raise ValueError(f"line {number}: not a class index and 4 numbers: {line.strip()!r}") from None
        if not 0 <= index < len(names):
            raise ValueError(f"line {number}: class {index} is not in the {len(names)} names")
        cx, cy, w, h = values
        if w < 0 or h < 0:
            raise ValueError(f"line {number}: negative width or height {w}, {h}")
        xywh.append([(cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height])
        labels.append(names[index])
    try:
        return build_boxes(np.array(xywh, dtype=np.float64).reshape(-1, 4), labels, width, height)
    except ValueError as exc:
        box, _, problem = str(exc).partition(": ")
        number = _nonblank_line(text, int(box.removeprefix("box ")) if box.startswith("box ") else 0)
        raise ValueError(f"line {number}: {problem or exc}") from None


def _nonblank_line(text: str, box_index: int) -> int:
    """The 1-based line number of the box_index-th non-blank line of text."""
    numbers = [n for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    return numbers[box_index] if box_index < len(numbers) else box_index + 1


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
    xywh, labels, scores, ids = [], [], [], []
    for item in result:
        if item.get("type") != STUDIO_RESULT_TYPE or (from_name is not None and item.get("from_name") != from_name):
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
        if box[2] < 0 or box[3] < 0:
            raise ValueError(f"result {name}: negative width or height {box[2:]}")
        xywh.append(_envelope(*box, float(value.get("rotation") or 0.0)))
        labels.append(str(chosen[0]))
        scores.append(item.get("score"))
        ids.append(name)
    if not width or not height:
        raise ValueError("no rectanglelabels result and no image size given")
    has_scores = any(s is not None for s in scores)
    if has_scores and any(s is None for s in scores):
        raise ValueError("some rectanglelabels results have a score and others none")
    try:
        boxes = build_boxes(np.array(xywh).reshape(-1, 4), labels, width, height, scores if has_scores else None)
    except ValueError as exc:
        box, _, problem = str(exc).partition(": ")
        index = int(box.removeprefix("box ")) if box.startswith("box ") and problem else None
        raise ValueError(f"result {ids[index]}: {problem}" if index is not None else str(exc)) from exc
    return boxes, width, height

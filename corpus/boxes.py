"""The box schema: labeled boxes of one image as an Arrow list of structs, in pixels and normalised, versioned."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

BOXES_SCHEMA_VERSION = "1"

# x, y: the top-left corner; w, h: the size. Pixels of the image as stored, and the same divided by its
# width / height (what YOLO and Label Studio, in percent, keep). `score` is null for a human box and holds
# the support of a fused box or a model's confidence, in [0, 1], low = doubtful.
BOX_TYPE = pa.struct(
    [
        pa.field("label", pa.string(), nullable=False),
        pa.field("x", pa.float64(), nullable=False),
        pa.field("y", pa.float64(), nullable=False),
        pa.field("w", pa.float64(), nullable=False),
        pa.field("h", pa.float64(), nullable=False),
        pa.field("x_norm", pa.float64(), nullable=False),
        pa.field("y_norm", pa.float64(), nullable=False),
        pa.field("w_norm", pa.float64(), nullable=False),
        pa.field("h_norm", pa.float64(), nullable=False),
        pa.field("score", pa.float32()),
    ]
)
BOXES_TYPE = pa.list_(BOX_TYPE)

# One row per image of a detection release: its size and its boxes (an empty list: an image with no object).
BOX_RELEASE_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("boxes", BOXES_TYPE, nullable=False),
    ],
    metadata={b"flywheel.boxes_schema_version": BOXES_SCHEMA_VERSION.encode()},
)

# One row per annotator's (or model's) boxes of one image, as pulled from Label Studio.
BOX_ANNOTATION_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("annotator", pa.string(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("boxes", BOXES_TYPE, nullable=False),
    ],
    metadata={b"flywheel.boxes_schema_version": BOXES_SCHEMA_VERSION.encode()},
)


class BoxSet(NamedTuple):
    """The boxes of one image as arrays, the form the box algorithms take: corners xyxy (N, 4) in pixels,
    labels (N,) as str, scores (N,) in [0, 1] (1 where a person drew the box)."""

    xyxy: np.ndarray
    labels: np.ndarray
    scores: np.ndarray


def make_box_set(xyxy: Any, labels: Sequence[str], scores: Sequence[float] | None = None) -> BoxSet:
    """A BoxSet from corners (N, 4), labels (N,) and optional scores (N,), shapes checked."""
    corners = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    names = np.asarray([str(v) for v in labels], dtype=object)
    values = np.ones(len(corners)) if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
    if not len(corners) == len(names) == len(values):
        raise ValueError(f"need one label and score per box: {len(corners)}, {len(names)}, {len(values)}")
    return BoxSet(corners, names, values)


def box_set_from_rows(boxes: Sequence[dict[str, Any]]) -> BoxSet:
    """A BoxSet from rows of BOX_TYPE (a missing score counts as 1: a person's box)."""
    xywh, labels, scores = boxes_to_arrays(boxes)
    return make_box_set(xywh_to_xyxy(xywh), labels, np.where(np.isnan(scores), 1.0, scores))


# A box may overhang the image by this many pixels before it is refused (rounding in a tool's percentages);
# the overhang is clipped away.
EDGE_TOLERANCE_PX = 1.0


def xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    """Corners (N, 4) x_min, y_min, x_max, y_max from top-left corners and sizes (N, 4)."""
    xywh = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


def xyxy_to_xywh(xyxy: np.ndarray) -> np.ndarray:
    """Top-left corners and sizes (N, 4) from corners (N, 4)."""
    xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)


def compute_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """IoU (N, M) in [0, 1] of corners first (N, 4) and second (M, 4), xyxy in pixels (0 = disjoint)."""
    a = np.asarray(first, dtype=np.float64).reshape(-1, 4)[:, None, :]
    b = np.asarray(second, dtype=np.float64).reshape(-1, 4)[None, :, :]
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = width * height
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def build_boxes(
    xywh: np.ndarray,
    labels: Sequence[str],
    width: int,
    height: int,
    scores: Sequence[float] | None = None,
) -> list[dict[str, Any]]:
    """Rows of BOX_TYPE from pixel boxes xywh (N, 4) and labels (N,) on a width x height image.

    A box overhanging the image by at most EDGE_TOLERANCE_PX is clipped; one further out, with no area, or
    not finite raises ValueError naming the box by its index.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    xyxy = xywh_to_xyxy(xywh)
    if len(labels) != len(xyxy) or (scores is not None and len(scores) != len(xyxy)):
        raise ValueError(f"need one label (and score) per box: {len(xyxy)} boxes, {len(labels)} labels")
    limits = np.array([0.0, 0.0, width, height])
    rows = []
    for i, (corners, label) in enumerate(zip(xyxy, labels, strict=True)):
        if not np.all(np.isfinite(corners)):
            raise ValueError(f"box {i}: coordinates must be finite, got {corners.tolist()}")
        outside = np.concatenate([limits[:2] - corners[:2], corners[2:] - limits[2:]])
        if np.any(outside > EDGE_TOLERANCE_PX):
            raise ValueError(f"box {i}: {corners.tolist()} lies outside the {width}x{height} image")
        x0, y0 = np.maximum(corners[:2], 0.0)
        x1, y1 = np.minimum(corners[2:], limits[2:])
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"box {i}: {corners.tolist()} has no area")
        if not str(label):
            raise ValueError(f"box {i}: empty label")
        score = None if scores is None else float(scores[i])
        if score is not None and not 0.0 <= score <= 1.0:
            raise ValueError(f"box {i}: score must be in [0, 1], got {score}")
        w, h = x1 - x0, y1 - y0
        rows.append(
            {
                "label": str(label),
                "x": float(x0),
                "y": float(y0),
                "w": float(w),
                "h": float(h),
                "x_norm": float(x0 / width),
                "y_norm": float(y0 / height),
                "w_norm": float(w / width),
                "h_norm": float(h / height),
                "score": score,
            }
        )
    return rows


def boxes_to_arrays(boxes: Sequence[dict[str, Any]]) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(xywh (N, 4) pixels, labels (N,), scores (N,) with NaN where a box has none) from rows of BOX_TYPE."""
    xywh = np.array([[b["x"], b["y"], b["w"], b["h"]] for b in boxes], dtype=np.float64).reshape(-1, 4)
    scores = np.array([np.nan if b.get("score") is None else b["score"] for b in boxes], dtype=np.float64)
    return xywh, [str(b["label"]) for b in boxes], scores


def build_box_release_table(
    record_ids: Sequence[str], sizes: Sequence[tuple[int, int]], boxes: Sequence[Sequence[dict[str, Any]]]
) -> pa.Table:
    """A BOX_RELEASE_SCHEMA table: one row per image, sizes as (width, height), boxes as rows of BOX_TYPE."""
    if not len(record_ids) == len(sizes) == len(boxes):
        raise ValueError(f"need one size and one box list per record: {len(record_ids)}, {len(sizes)}, {len(boxes)}")
    return pa.table(
        {
            "record_id": pa.array(record_ids, pa.string()),
            "width": pa.array([w for w, _ in sizes], pa.int32()),
            "height": pa.array([h for _, h in sizes], pa.int32()),
            "boxes": pa.array([list(b) for b in boxes], BOXES_TYPE),
        },
        schema=BOX_RELEASE_SCHEMA,
    )


def check_box_release_table(table: pa.Table) -> None:
    """Raise ValueError naming the first problem: a schema version or column that differs from
    BOX_RELEASE_SCHEMA, or a box whose normalised coordinates disagree with its pixels."""
    metadata = table.schema.metadata or {}
    version = metadata.get(b"flywheel.boxes_schema_version", b"").decode()
    if version != BOXES_SCHEMA_VERSION:
        raise ValueError(f"boxes schema version {version or 'missing'}; this Flywheel reads {BOXES_SCHEMA_VERSION}")
    for field in BOX_RELEASE_SCHEMA:
        if field.name not in table.column_names or table.schema.field(field.name).type != field.type:
            raise ValueError(f"column {field.name!r} missing or not {field.type}")
    for row in table.select(["record_id", "width", "height", "boxes"]).to_pylist():
        for i, box in enumerate(row["boxes"]):
            expected = (box["x"] / row["width"], box["y"] / row["height"], box["w"] / row["width"])
            actual = (box["x_norm"], box["y_norm"], box["w_norm"])
            if not np.allclose(expected, actual, atol=1e-9) or abs(box["h"] / row["height"] - box["h_norm"]) > 1e-9:
                raise ValueError(f"record {row['record_id']}: box {i} normalised coordinates disagree with its pixels")


# The stratification key (a release's `label`) of an image without objects: its own stratum, so that train,
# val and test all get images to learn "nothing here" from. Not a class: no box carries it.
NO_OBJECT_LABEL = "no_object"


def majority_box_label(boxes: Sequence[dict[str, Any]]) -> str:
    """The label most of an image's boxes carry (ties: the alphabetically first), NO_OBJECT_LABEL without boxes:
    what a detect release stratifies its splits on and stores in `label`."""
    counts: dict[str, int] = {}
    for box in boxes:
        counts[str(box["label"])] = counts.get(str(box["label"]), 0) + 1
    if not counts:
        return NO_OBJECT_LABEL
    return min(counts, key=lambda label: (-counts[label], label))

"""Augmentation for boxes: albumentations recipes whose boxes follow the pixels (bbox_params), as data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import albumentations as A
import numpy as np

from training.augment import build_transforms

# A box that keeps less than 30% of its area after a crop is dropped with its label: a sliver at the edge
# teaches the detector to fire on fragments. A chosen value (albumentations' default 0.0 keeps every sliver).
MIN_VISIBILITY = 0.3
# Boxes smaller than 1 px² after a transform carry no object; albumentations' default 0 keeps them.
MIN_AREA_PX = 1.0
BOX_FORMATS = ("coco", "pascal_voc")

_NORMALIZE = {"__class_fullname__": "Normalize", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "p": 1.0}
# Entries in the format of training.augment.build_transforms ("size" / "height" and "width" filled in).
BOX_RECIPES: dict[str, list[dict[str, Any]]] = {
    "boxes-basic": [
        {"__class_fullname__": "HorizontalFlip", "p": 0.5},
        # Scale and shift as in the YOLO family's defaults (scale 0.5 there; milder here for small images),
        # rotations small: "ellipse" keeps the turned box tight (Kalra et al. 2021, "Towards Rotation
        # Invariance in Object Detection"), where "largest_box" inflates it.
        {
            "__class_fullname__": "Affine",
            "scale": [0.75, 1.25],
            "translate_percent": [-0.1, 0.1],
            "rotate": [-10, 10],
            "rotate_method": "ellipse",
            "p": 0.5,
        },
        # A crop that keeps every box whole, resized back to the training size.
        {"__class_fullname__": "RandomSizedBBoxSafeCrop", "p": 0.3},
        {"__class_fullname__": "Resize", "p": 1.0},
        _NORMALIZE,
    ],
    # Top-down imagery (aerial, documents on a table, shapes): no up or down, so vertical flips and quarter
    # turns are free extra views.
    "boxes-topdown": [
        {"__class_fullname__": "HorizontalFlip", "p": 0.5},
        {"__class_fullname__": "VerticalFlip", "p": 0.5},
        {"__class_fullname__": "RandomRotate90", "p": 0.5},
        {"__class_fullname__": "RandomSizedBBoxSafeCrop", "p": 0.3},
        {"__class_fullname__": "Resize", "p": 1.0},
        _NORMALIZE,
    ],
    "boxes-eval": [{"__class_fullname__": "Resize", "p": 1.0}, _NORMALIZE],
}


def build_box_transforms(
    entries: list[dict[str, Any]],
    size: int,
    seed: int | None = None,
    *,
    box_format: str = "coco",
    min_visibility: float = MIN_VISIBILITY,
    save_applied_params: bool = False,
) -> A.Compose:
    """An albumentations Compose over an image and its boxes (`bboxes` in `box_format`: coco = x, y, w, h
    pixels; pascal_voc = x_min, y_min, x_max, y_max pixels) with their `labels`: the boxes move with every
    geometric transform, are clipped to the image, and one keeping less than `min_visibility` of its area
    is dropped with its label. Entries as in training.augment.build_transforms."""
    if box_format not in BOX_FORMATS:
        raise ValueError(f"box_format must be one of {BOX_FORMATS}, got {box_format!r}")
    if not 0.0 <= min_visibility <= 1.0:
        raise ValueError(f"min_visibility must be in [0, 1], got {min_visibility}")
    transforms = build_transforms(entries, size, seed).transforms
    bbox_params = A.BboxParams(
        format=box_format, label_fields=["labels"], min_visibility=min_visibility, min_area=MIN_AREA_PX, clip=True
    )
    return A.Compose(transforms, bbox_params=bbox_params, seed=seed, save_applied_params=save_applied_params)


def get_box_recipe(name: str, size: int, seed: int | None = None, **options: Any) -> A.Compose:
    """The named recipe of BOX_RECIPES producing `size`x`size` float images and their boxes."""
    if name not in BOX_RECIPES:
        raise ValueError(f"unknown box augmentation recipe {name!r}; recipes: {sorted(BOX_RECIPES)}")
    return build_box_transforms(BOX_RECIPES[name], size, seed, **options)


def augment_boxes(
    transform: A.Compose, image: np.ndarray, boxes: np.ndarray, labels: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(image, boxes (M, 4), labels (M,)) after `transform` (built by build_box_transforms) of an HWC image
    and its boxes (N, 4) in the transform's format; M <= N, as boxes leaving the image are dropped."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(labels) != len(boxes):
        raise ValueError(f"need one label per box: {len(boxes)} boxes, {len(labels)} labels")
    out = transform(image=image, bboxes=boxes, labels=list(labels))
    return out["image"], np.asarray(out["bboxes"], dtype=np.float64).reshape(-1, 4), [str(v) for v in out["labels"]]

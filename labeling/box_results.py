"""Boxes in Label Studio's terms: RectangleLabels results (percent of the image) to and from rows of BOX_TYPE."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Reading results back is pure JSON, so it lives in corpus where the importers (crawlers) reach it too.
from corpus.box_formats import STUDIO_RESULT_TYPE as RESULT_TYPE
from corpus.box_formats import boxes_from_studio_result

__all__ = ["RESULT_TYPE", "boxes_from_studio_result", "boxes_to_studio_result"]


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

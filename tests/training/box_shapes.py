"""Generated detection data for tests: coloured shapes at known boxes on noisy backgrounds, as records."""

from __future__ import annotations

import cv2
import numpy as np
import pyarrow as pa

from corpus.boxes import build_boxes
from corpus.schema import conform, make_record_id

BOX_COLOURS = {"square": (40, 200, 40), "disc": (220, 40, 40)}


def draw_box_image(
    rng: np.random.Generator, side: int = 64, most: int = 2, kinds: tuple[str, ...] = ("square", "disc")
) -> tuple[bytes, list[dict]]:
    """PNG bytes of a side x side image holding 1..`most` shapes of `kinds` that do not overlap, and their boxes
    (BOX_TYPE rows, exact: a filled square covers its box, a disc touches its box's four sides)."""
    img = rng.integers(0, 60, size=(side, side, 3), dtype=np.uint8)
    xywh, labels = [], []
    for _ in range(int(rng.integers(1, most + 1))):
        for _attempt in range(20):
            s = int(rng.integers(side // 6, side // 3))
            x, y = (int(v) for v in rng.integers(0, side - s, size=2))
            if all(x + s <= a or a + w <= x or y + s <= b or b + h <= y for a, b, w, h in xywh):
                break
        else:
            continue
        kind = kinds[int(rng.integers(len(kinds)))]
        colour = BOX_COLOURS[kind]
        if kind == "square":
            cv2.rectangle(img, (x, y), (x + s - 1, y + s - 1), colour, -1)
        else:
            r = s // 2
            cv2.circle(img, (x + r, y + r), r, colour, -1)
            s = 2 * r + 1
        xywh.append((x, y, s, s))
        labels.append(kind)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes(), build_boxes(np.array(xywh, np.float64), labels, side, side)


def make_box_records(n: int, seed: int = 0, side: int = 64, kinds: tuple[str, ...] = ("square", "disc")) -> pa.Table:
    """`n` image records (RECORD_SCHEMA) with their true `boxes` of shapes among `kinds`; `label` is the first
    box's (releases stratify their splits by it)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        image, boxes = draw_box_image(rng, side, kinds=kinds)
        rows.append(
            {
                "record_id": make_record_id(image),
                "kind": "image",
                "image": image,
                "width": side,
                "height": side,
                "mime": "image/png",
                "label": boxes[0]["label"],
                "boxes": boxes,
                "label_source": "human",
                "label_confidence": 1.0,
                "annotators": ["sim-1"],
            }
        )
    return conform(pa.Table.from_pylist(rows))

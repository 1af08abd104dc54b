"""What a detect release adds to its manifest and checks: the box label list, box counts per split, boxes present."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc


def box_labels(train: pa.Table) -> list[str]:
    """The class list of a detect release, index -> name: the sorted labels of train's boxes (what a detector
    trained on it numbers its classes by; images' `label`, a stratification key, is not a class)."""
    return sorted({box["label"] for boxes in train.column("boxes").to_pylist() for box in boxes or ()})


def count_boxes(parts: dict[str, pa.Table]) -> dict[str, dict[str, int]]:
    """split -> box label -> boxes in that split."""
    counts = {}
    for split, table in parts.items():
        found = Counter(box["label"] for boxes in table.column("boxes").to_pylist() for box in boxes or ())
        counts[split] = dict(sorted(found.items()))
    return counts


def check_boxes_present(table: pa.Table) -> None:
    """ValueError naming the first records without boxes ([] is an image with no object; null was never drawn)."""
    missing = pc.is_null(table.column("boxes"))
    if pc.any(missing).as_py():
        ids = table.filter(missing).column("record_id").to_pylist()
        raise ValueError(f"{len(ids)} records of a detect release have no boxes, e.g. {ids[:3]}; release drawn images")


def boxes_key(table: pa.Table) -> list[str]:
    """Each row's boxes as canonical JSON, so that a release whose boxes moved is not taken for its parent."""
    return [json.dumps(boxes, sort_keys=True) for boxes in table.column("boxes").to_pylist()]

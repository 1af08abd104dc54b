"""The label pool: which curated folder is the latest pool, its records by id, and the gold answers file."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from corpus.store import DataRoot

POOL_POINTER = "curated/LATEST_POOL.json"


class NoPoolError(FileNotFoundError):
    """Nothing was ingested into this data root yet, so there is no pool to label."""


def remember_pool(root: DataRoot, pool: str) -> str:
    """Record `pool` (a folder under the root) as the latest label pool, so later commands need not name it."""
    root.write_json(POOL_POINTER, {"pool": pool, "at": datetime.now(UTC).isoformat()})
    return pool


def latest_pool(root: DataRoot) -> str:
    """The folder of the latest pool; NoPoolError (one line, naming the root) if nothing was ingested yet."""
    if not root.exists(POOL_POINTER):
        raise NoPoolError(f"no label pool under {root.url}: run `flywheel ingest` (or `flywheel curate`) first")
    return str(root.read_json(POOL_POINTER)["pool"])


def _is_answer(value: object) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))


def read_gold(root: DataRoot, gold_path: str | None) -> dict[str, str]:
    """Gold answers (record_id -> known label) from a JSON object file under the root; {} without a path.
    A multi-label dataset's known answers are lists of labels (the set; [] = none of them).

    A file that is not a JSON object of strings (or lists of strings) raises ValueError naming the file.
    """
    if not gold_path:
        return {}
    if not root.exists(gold_path):
        raise FileNotFoundError(f"gold file {gold_path} not found under {root.url}")
    gold = root.read_json(gold_path)
    if not isinstance(gold, dict) or not all(isinstance(k, str) and _is_answer(v) for k, v in gold.items()):
        raise ValueError(f"gold file {gold_path}: expected a JSON object of record_id -> label strings (or lists)")
    return dict(gold)


# What a gold box must say: its label and its top-left corner and size in pixels of the image as stored.
GOLD_BOX_KEYS = ("label", "x", "y", "w", "h")


def read_box_gold(root: DataRoot, gold_path: str | None) -> dict[str, list[dict[str, Any]]]:
    """Gold boxes (record_id -> the image's known boxes, each {"label", "x", "y", "w", "h"} in pixels; [] for an
    image with no object) from a JSON object file under the root: a detect round's gold file; {} without a path.

    A file that is not such an object raises ValueError naming the file and the first bad record.
    """
    if not gold_path:
        return {}
    if not root.exists(gold_path):
        raise FileNotFoundError(f"gold file {gold_path} not found under {root.url}")
    gold = root.read_json(gold_path)
    if not isinstance(gold, dict):
        raise ValueError(f"gold file {gold_path}: expected a JSON object of record_id -> list of boxes")
    out: dict[str, list[dict[str, Any]]] = {}
    for record_id, boxes in gold.items():
        if not isinstance(boxes, list) or not all(_is_gold_box(b) for b in boxes):
            raise ValueError(
                f"gold file {gold_path}: record {record_id}: expected a list of boxes with a label and numeric "
                "x, y, w, h (pixels, w and h > 0)"
            )
        out[str(record_id)] = [{k: box[k] for k in GOLD_BOX_KEYS} | {"score": None} for box in boxes]
    return out


def _is_gold_box(box: Any) -> bool:
    if not isinstance(box, dict) or not isinstance(box.get("label"), str) or not box["label"]:
        return False
    values = [box.get(k) for k in GOLD_BOX_KEYS[1:]]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return False
    return values[2] > 0 and values[3] > 0


def select_records(table: pa.Table, record_ids: Iterable[str], column: str = "record_id") -> pa.Table:
    """The rows of `table` whose `column` is one of `record_ids` (in the table's order)."""
    wanted = pa.array(list(record_ids), type=pa.string())
    return table.filter(pc.is_in(table.column(column), wanted))

"""A detect release: its manifest names the box classes and counts boxes per split, a moved box makes a new
version, an undrawn record is refused, the gold boxes file is read with one clear line per problem, and a COCO
export of it carries exactly the box classes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from corpus.boxes import NO_OBJECT_LABEL, build_boxes, majority_box_label
from corpus.exports.export import export_release
from corpus.pool import read_box_gold
from corpus.releases.build import build_release
from corpus.releases.config import ReleaseConfig
from corpus.schema import conform, make_record_id
from corpus.store import DataRoot

DETECT = ReleaseConfig(task="detect")


def _records(n: int = 24) -> pa.Table:
    rng = np.random.default_rng(4)
    rows = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, size=(40, 50, 3), dtype=np.uint8)).save(buf, format="PNG")
        labels = [] if i % 6 == 0 else (["cat"] if i % 2 else ["dog", "dog"])
        xywh = np.array([[2 + 3 * k, 4, 10, 8] for k in range(len(labels))], dtype=np.float64).reshape(-1, 4)
        boxes = build_boxes(xywh, labels, 50, 40)
        rows.append(
            {
                "record_id": make_record_id(buf.getvalue()),
                "kind": "image",
                "image": buf.getvalue(),
                "mime": "image/png",
                "width": 50,
                "height": 40,
                "near_dup_cluster": str(i),
                "boxes": boxes,
                "label": majority_box_label(boxes),
                "label_source": "consensus",
                "annotators": ["ann", "bob"],
            }
        )
    return conform(pa.Table.from_pylist(rows))


def test_a_detect_manifest_names_box_classes_and_counts_boxes_per_split(tmp_path) -> None:
    root = DataRoot(str(tmp_path))
    records = _records()
    manifest = build_release(root, "shapes", records, DETECT)
    assert manifest["task"] == "detect" and manifest["labels"] == ["cat", "dog"]  # no_object is not a class
    counts = manifest["box_counts"]
    assert sum(counts[s].get("dog", 0) for s in counts) == 2 * 8 and sum(counts[s].get("cat", 0) for s in counts) == 12
    assert NO_OBJECT_LABEL in manifest["class_counts"]["train"]  # images without objects are their own stratum

    moved = records.to_pylist()
    moved[1]["boxes"][0]["x"] += 1.0
    again = build_release(root, "shapes", conform(pa.Table.from_pylist(moved, schema=records.schema)), DETECT)
    assert not again.get("unchanged") and again["version"] == "v0002"
    same = build_release(root, "shapes", conform(pa.Table.from_pylist(moved, schema=records.schema)), DETECT)
    assert same.get("unchanged")


def test_a_detect_release_refuses_records_nobody_drew(tmp_path) -> None:
    records = _records(6)
    undrawn = records.set_column(records.schema.get_field_index("boxes"), "boxes", pa.nulls(6, records["boxes"].type))
    with pytest.raises(ValueError, match="6 records of a detect release have no boxes"):
        build_release(DataRoot(str(tmp_path)), "shapes", undrawn, DETECT)


def test_a_coco_export_of_a_detect_release_has_the_box_classes_only(tmp_path) -> None:
    root = DataRoot(str(tmp_path))
    manifest = build_release(root, "shapes", _records(), DETECT)
    exported = export_release(root, "shapes", manifest["version"], "coco")
    instances = json.loads((Path(exported["path"]) / "annotations" / "instances_train.json").read_text())
    assert [c["name"] for c in instances["categories"]] == ["cat", "dog"]


def test_gold_boxes_are_read_and_a_bad_file_is_named_with_its_record(tmp_path) -> None:
    root = DataRoot(str(tmp_path))
    root.write_json("gold.json", {"r1": [{"label": "cat", "x": 1, "y": 2, "w": 3.5, "h": 4}], "r2": []})
    gold = read_box_gold(root, "gold.json")
    assert gold["r1"] == [{"label": "cat", "x": 1, "y": 2, "w": 3.5, "h": 4, "score": None}] and gold["r2"] == []
    assert read_box_gold(root, None) == {}
    root.write_json("bad.json", {"r1": [{"label": "cat", "x": 1, "y": 2, "w": 0, "h": 4}]})
    with pytest.raises(ValueError, match=r"gold file bad\.json: record r1: expected a list of boxes"):
        read_box_gold(root, "bad.json")
    root.write_json("labels.json", {"r1": "cat"})
    with pytest.raises(ValueError, match=r"gold file labels\.json: record r1"):
        read_box_gold(root, "labels.json")
    with pytest.raises(FileNotFoundError, match=r"gold file missing\.json"):
        read_box_gold(root, "missing.json")

"""Re-importing a source whose labels were edited: the record keeps its row and id, its imported labels get a
new version (boxes: a box update; a class: a newer version of its imported annotation); an unchanged source
adds nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from corpus.schema import make_record_id
from corpus.store import DataRoot
from crawlers.importers.config import ImportConfig
from crawlers.importers.importer import import_to_root
from crawlers.importers.labels import apply_box_updates, read_box_updates
from labeling.sync import read_annotations
from tests.crawlers.import_files import make_imagefolder
from tests.crawlers.test_import_boxes import _write_yolo, _xywh, png

pytestmark = pytest.mark.timeout(120)


def imported(tmp_path: Path, source: Path, run_name: str, **options) -> dict:
    root = DataRoot(str(tmp_path / "data"))
    cfg = ImportConfig(source=str(source), **options)
    return import_to_root(root, cfg, import_run=run_name, work_dir=tmp_path / "work")


def newest_boxes(tmp_path: Path) -> dict[str, list]:
    """record_id -> boxes as a release takes them: the first import's rows with every box update applied."""
    root = DataRoot(str(tmp_path / "data"))
    records = apply_box_updates(root.read_table("raw/import-1"), read_box_updates(root))
    return dict(zip(records.column("record_id").to_pylist(), records.column("boxes").to_pylist(), strict=True))


def side_files(tmp_path: Path) -> list[str]:
    data = tmp_path / "data"
    return sorted(str(p.relative_to(data)) for p in data.rglob("*.parquet"))


def test_edited_coco_boxes_and_categories_are_a_new_label_version_not_a_new_record(tmp_path):
    folder = tmp_path / "coco"
    data = {i: png(folder / "images" / f"{i}.png", 64, 48, seed=i) for i in (1, 2, 3)}
    doc = {
        "images": [{"id": i, "file_name": f"{i}.png", "width": 64, "height": 48} for i in (1, 2, 3)],
        "categories": [{"id": 7, "name": "car"}, {"id": 8, "name": "bike"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 7, "bbox": [0, 0, 10, 10]},
            {"id": 11, "image_id": 2, "category_id": 7, "bbox": [5, 5, 20, 20]},
            {"id": 12, "image_id": 3, "category_id": 8, "bbox": [1, 1, 4, 4]},
        ],
    }
    path = folder / "instances.json"
    path.write_text(json.dumps(doc))
    first = imported(tmp_path, path, "import-1", name="street")
    assert first["records"] == 3 and first["labels_changed"] == 0
    doc["annotations"][0]["bbox"] = [2, 3, 12, 8]  # image 1: the box moved
    doc["annotations"][1]["category_id"] = 8  # image 2: another category
    path.write_text(json.dumps(doc))
    second = imported(tmp_path, path, "import-2", name="street")
    assert (second["records"], second["unchanged"], second["labels_changed"]) == (0, 3, 2)
    assert second["output"] is None  # no raw row: the records stay as they are
    boxes = newest_boxes(tmp_path)
    assert _xywh(boxes[make_record_id(data[1])]) == [["car", 2, 3, 12, 8]]
    assert _xywh(boxes[make_record_id(data[2])]) == [["bike", 5, 5, 20, 20]]
    assert _xywh(boxes[make_record_id(data[3])]) == [["bike", 1, 1, 4, 4]]  # untouched
    before = side_files(tmp_path)
    third = imported(tmp_path, path, "import-3", name="street")
    assert (third["records"], third["labels_changed"], third["output"]) == (0, 0, None)
    assert side_files(tmp_path) == before  # an unchanged source writes nothing


def test_an_edited_yolo_label_file_updates_that_images_boxes_only(tmp_path):
    data = _write_yolo(tmp_path / "yolo", "data.yaml")
    (tmp_path / "yolo" / "labels" / "val" / "c.txt").write_text("1 0.5 0.5 0.25 0.5\n")
    (tmp_path / "yolo" / "labels" / "val" / "d.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    first = imported(tmp_path, tmp_path / "yolo", "import-1")
    assert first["records"] == 4 and first["dropped"] == 0
    (tmp_path / "yolo" / "labels" / "train" / "a.txt").write_text("1 0.5 0.5 0.5 0.5\n")  # one box, now a dog
    second = imported(tmp_path, tmp_path / "yolo", "import-2")
    assert (second["records"], second["labels_changed"], second["output"]) == (0, 1, None)
    boxes = newest_boxes(tmp_path)
    assert _xywh(boxes[make_record_id(data["a"])]) == [["dog", 25.0, 12.5, 50.0, 25.0]]
    assert _xywh(boxes[make_record_id(data["c"])]) == [["dog", 24.0, 8.0, 16.0, 16.0]]
    updates = read_box_updates(DataRoot(str(tmp_path / "data")))
    assert updates.column("record_id").to_pylist() == [make_record_id(data["a"])]
    assert updates.column("label_source").to_pylist() == ["imported:yolo"]
    third = imported(tmp_path, tmp_path / "yolo", "import-3")
    assert (third["records"], third["labels_changed"]) == (0, 0)
    assert read_box_updates(DataRoot(str(tmp_path / "data"))).num_rows == 1


def test_an_image_moved_to_another_class_folder_keeps_its_record_and_gets_the_new_class(tmp_path):
    tree = make_imagefolder(tmp_path / "pets")
    moved = (tmp_path / "pets" / "cat" / "0.jpg").read_bytes()
    first = imported(tmp_path, tree, "import-1", label_policy="trusted")
    assert first["records"] == 12
    shutil.move(tmp_path / "pets" / "cat" / "0.jpg", tmp_path / "pets" / "dog" / "moved.jpg")
    second = imported(tmp_path, tree, "import-2", label_policy="trusted")
    assert (second["records"], second["unchanged"], second["labels_changed"], second["output"]) == (0, 12, 1, None)
    root = DataRoot(str(tmp_path / "data"))
    annotations = read_annotations(root)
    rid = make_record_id(moved)
    mine = [a for a in annotations.to_pylist() if a["record_id"] == rid]  # the newest version of each
    assert [(a["label"], a["annotator"]) for a in mine] == [("dog", "imported:pets")]
    assert annotations.num_rows == 12  # one imported annotation per record, never a second vote
    assert root.list_dirs("raw") == ["import-1"] and root.read_table("raw/import-1").num_rows == 12
    third = imported(tmp_path, tree, "import-3", label_policy="trusted")
    assert (third["records"], third["unchanged"], third["labels_changed"]) == (0, 12, 0)
    assert read_annotations(root).num_rows == 12

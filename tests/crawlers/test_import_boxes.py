"""Importing boxes: COCO files, YOLO folders and Label Studio RectangleLabels exports become records with a
boxes column (corpus.boxes) marked imported:<source>; malformed annotations are one line naming the file and
the annotation, and every other image is imported."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from corpus.boxes import BOX_RELEASE_SCHEMA, build_boxes, check_box_release_table
from corpus.exports.export import export_release
from corpus.releases.build import build_release
from corpus.releases.config import ReleaseConfig
from corpus.releases.versions import load_release
from corpus.schema import make_record_id
from corpus.store import DataRoot
from crawlers.importers.config import ImportConfig
from crawlers.importers.importer import import_to_root
from labeling.box_results import boxes_to_studio_result

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "corpus"))
from test_box_exports import box_records

pytestmark = pytest.mark.timeout(120)


def png(path: Path, width: int, height: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def run(tmp_path: Path, source: Path, **options) -> tuple[dict, dict[str, dict]]:
    root = DataRoot(str(tmp_path / "data"))
    cfg = ImportConfig(source=str(source), **options)
    report = import_to_root(root, cfg, import_run="import-1", work_dir=tmp_path / "work")
    rows = root.read_table(report["output"]).to_pylist() if report["output"] else []
    return report, {r["record_id"]: r for r in rows}


def _xywh(boxes: list[dict]) -> list[list]:
    return [[b["label"], b["x"], b["y"], b["w"], b["h"]] for b in boxes]


def _details(report: dict) -> list[str]:
    return sorted(r["detail"] for r in report["refused"] if r["reason"] == "bad_box")


def test_coco_boxes_are_imported_and_each_malformed_annotation_is_one_line_naming_it(tmp_path):
    folder = tmp_path / "coco"
    sizes = {1: (80, 60), 2: (50, 40), 3: (64, 48), 4: (64, 48), 5: (64, 48), 6: (64, 48)}
    data = {i: png(folder / "images" / f"{i}.png", *size, seed=i) for i, size in sizes.items()}
    images = [{"id": i, "file_name": f"{i}.png", "width": w, "height": h} for i, (w, h) in sizes.items()]
    images[5]["width"] = 100  # declared 100x48, the file is 64x48
    anns = [
        (10, 1, 7, [0, 0, 80, 60]),  # the whole image
        (11, 1, 8, [10.5, 20.25, 30, 15]),
        (12, 2, 8, [49, 39, 1, 1]),  # the bottom-right pixel
        (13, 3, 7, [60, 10, 10, 10]),  # 6 px beyond the right edge
        (14, 4, 99, [1, 1, 5, 5]),  # no category 99
        (15, 5, 7, [10, 10, -4, 5]),  # negative width
        (16, 6, 7, [1, 1, 5, 5]),
        (17, 42, 7, [1, 1, 5, 5]),  # an image the file does not list
    ]
    crowd = {"id": 18, "image_id": 1, "category_id": 7, "bbox": [0, 0, 40, 30], "iscrowd": 1}
    doc = {
        "images": images,
        "categories": [{"id": 7, "name": "car"}, {"id": 8, "name": "bike"}],
        "annotations": [{"id": a, "image_id": i, "category_id": c, "bbox": b} for a, i, c, b in anns] + [crowd],
    }
    (folder / "instances.json").write_text(json.dumps(doc))
    report, rows = run(tmp_path, folder / "instances.json", name="street")
    assert report["records"] == 2 and report["dropped_by_reason"] == {"bad_box": 5}
    first, second = rows[make_record_id(data[1])], rows[make_record_id(data[2])]
    assert _xywh(first["boxes"]) == [["car", 0, 0, 80, 60], ["bike", 10.5, 20.25, 30, 15]]
    assert first["boxes"][1]["x_norm"] == 10.5 / 80 and first["boxes"][1]["h_norm"] == 15 / 60
    assert _xywh(second["boxes"]) == [["bike", 49, 39, 1, 1]] and second["label_source"] == "imported:street"
    assert (first["width"], first["height"]) == (80, 60)
    metadata = DataRoot(str(tmp_path / "data")).read_table("imports/street/metadata", schema=None).to_pylist()
    by_id = {m["record_id"]: json.loads(m["metadata"]) for m in metadata}
    assert by_id[first["record_id"]]["coco_crowd_annotations"] == [18]  # a crowd region is no box, kept aside
    path = folder / "instances.json"
    assert _details(report) == sorted(
        [
            f"{path}: image 3 (3.png), annotation 13: [60.0, 10.0, 70.0, 20.0] lies outside the 64x48 image",
            f"{path}: image 4 (4.png), annotation 14: unknown category_id 99 (categories: [7, 8])",
            f"{path}: image 5 (5.png), annotation 15: bbox [10, 10, -4, 5] has a negative width or height",
            f"{folder / 'images' / '6.png'}: its boxes are for a 100x48 image, the file is 64x48",
            f"{path}: annotation 17: unknown image_id 42",
        ]
    )


def _write_yolo(folder: Path, names_file: str) -> dict[str, bytes]:
    out = {
        "a": png(folder / "images" / "train" / "a.png", 100, 50, seed=1),
        "b": png(folder / "images" / "train" / "b.png", 40, 40, seed=2),
        "c": png(folder / "images" / "val" / "c.png", 64, 32, seed=3),
        "d": png(folder / "images" / "val" / "d.png", 64, 32, seed=4),
    }
    (folder / "labels" / "train").mkdir(parents=True)
    (folder / "labels" / "val").mkdir(parents=True)
    (folder / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.4\n1 0.1 0.1 0.2 0.2\n")
    # b has no label file: an image without objects
    (folder / "labels" / "val" / "c.txt").write_text("1 0.5 0.5 0.25 0.5\n0 0.5 0.5 0.25\n")
    (folder / "labels" / "val" / "d.txt").write_text("2 0.5 0.5 0.5 0.5\n")
    if names_file == "data.yaml":
        (folder / "data.yaml").write_text("train: images/train\nval: images/val\nnames:\n  0: cat\n  1: dog\n")
    else:
        (folder / "classes.txt").write_text("cat\ndog\n")
    return out


@pytest.mark.parametrize("names_file", ["data.yaml", "classes.txt"])
def test_a_yolo_folder_with_its_boxes_and_a_bad_line_named(tmp_path, names_file):
    data = _write_yolo(tmp_path / "yolo", names_file)
    report, rows = run(tmp_path, tmp_path / "yolo")
    assert report["kind"] == "yolo" and report["records"] == 2 and report["dropped_by_reason"] == {"bad_box": 2}
    a, b = rows[make_record_id(data["a"])], rows[make_record_id(data["b"])]
    assert _xywh(a["boxes"]) == [["cat", 40.0, 15.0, 20.0, 20.0], ["dog", 0.0, 0.0, 20.0, 10.0]]
    assert b["boxes"] == [] and a["label_source"] == "imported:yolo"
    labels = tmp_path / "yolo" / "labels" / "val"
    assert _details(report) == [
        f"{labels / 'c.txt'}: line 2: needs 5 values 'class cx cy w h', got 4: '0 0.5 0.5 0.25'",
        f"{labels / 'd.txt'}: line 1: class 2 is not in the 2 names",
    ]


def test_a_yolo_export_imports_back_to_the_same_boxes(tmp_path):
    root = DataRoot(str(tmp_path / "root"))
    build_release(root, "shapes", box_records(), ReleaseConfig())
    export_release(root, "shapes", "v0001", "yolo", str(tmp_path / "export"))
    release = load_release(root, "shapes")
    truth = pa.concat_tables([release.train, release.val, release.test]).to_pylist()
    report, rows = run(tmp_path, tmp_path / "export")
    assert report["kind"] == "yolo" and report["records"] == len(truth) and report["dropped"] == 0
    keys = ("x_norm", "y_norm", "w_norm", "h_norm")
    for row in truth:
        got = rows[row["record_id"]]["boxes"]
        assert [b["label"] for b in got] == [b["label"] for b in row["boxes"]]
        assert np.allclose([[b[k] for k in keys] for b in got], [[b[k] for k in keys] for b in row["boxes"]], atol=1e-6)
    table = pa.Table.from_pylist(list(rows.values())).select(["record_id", "width", "height", "boxes"])
    check_box_release_table(table.cast(BOX_RELEASE_SCHEMA))


def test_a_coco_export_imports_back_from_its_own_layout(tmp_path):
    root = DataRoot(str(tmp_path / "root"))
    build_release(root, "shapes", box_records(), ReleaseConfig())
    export_release(root, "shapes", "v0001", "coco", str(tmp_path / "export"))
    release = load_release(root, "shapes")
    report, rows = run(tmp_path, tmp_path / "export" / "annotations" / "instances_val.json")
    assert report["kind"] == "coco" and report["records"] == release.val.num_rows and report["dropped"] == 0
    for row in release.val.to_pylist():
        assert rows[row["record_id"]]["boxes"] == row["boxes"]


def test_label_studio_rectangles_come_with_their_boxes_and_a_bad_result_is_named(tmp_path):
    data = [png(tmp_path / "media" / f"{n}.png", 200, 100, seed=n) for n in range(3)]
    boxes = build_boxes(np.array([[10, 20, 30, 40], [100, 50, 100, 50]]), ["cat", "dog"], 200, 100)
    good = boxes_to_studio_result(boxes, 200, 100)
    bad = boxes_to_studio_result(boxes[:1], 200, 100)
    bad[0]["value"]["x"] = 95.0  # 95% + 15% of the width: 20 px past the right edge
    choice = [{"type": "choices", "value": {"choices": ["cat"]}, "from_name": "c", "to_name": "image"}]
    tasks = [
        {"id": 1, "data": {"image": "media/0.png"}, "annotations": [{"id": 11, "result": good}]},
        {"id": 2, "data": {"image": "media/1.png"}, "annotations": [{"id": 12, "result": bad}]},
        {"id": 3, "data": {"image": "media/2.png"}, "annotations": [{"id": 13, "result": choice}]},
    ]
    (tmp_path / "ls.json").write_text(json.dumps(tasks))
    report, rows = run(tmp_path, tmp_path / "ls.json")
    assert report["records"] == 2 and report["dropped_by_reason"] == {"bad_box": 1}
    boxed, chosen = rows[make_record_id(data[0])], rows[make_record_id(data[2])]
    assert np.allclose([r[1:] for r in _xywh(boxed["boxes"])], [[10, 20, 30, 40], [100, 50, 100, 50]])
    assert [b["label"] for b in boxed["boxes"]] == ["cat", "dog"] and boxed["label_source"] == "imported:ls"
    assert chosen["boxes"] is None and chosen["label_source"] is None
    assert _details(report) == [
        f"{tmp_path / 'ls.json'}: task 2, annotation 12: result label-0: "
        "[190.0, 20.0, 220.0, 60.0] lies outside the 200x100 image"
    ]

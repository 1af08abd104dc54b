"""COCO and YOLO exports of a release with boxes: read back by pycocotools and a YOLO reader, round trips,
refusals of releases that hold no boxes or no validation images, idempotence and the CLI end to end."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import typer
import yaml
from PIL import Image
from pycocotools.coco import COCO
from typer.testing import CliRunner

from corpus.boxes import BOXES_TYPE, build_boxes
from corpus.exports.export import export_release, verify_export
from corpus.releases.build import build_release
from corpus.releases.config import ReleaseConfig
from corpus.releases.versions import load_release
from corpus.schema import RECORD_SCHEMA, make_record_id
from corpus.store import DataRoot

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_releases import make_records

pytestmark = pytest.mark.timeout(120)
SHAPES = ("circle", "square", "star")


def _png(rng: np.random.Generator, width: int, height: int) -> bytes:
    pixels = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def box_records(n: int = 36, seed: int = 5) -> pa.Table:
    """`n` labeled image records of varied sizes with 0-3 boxes each (a record's label: its first box's, else
    "none"); boxes at random places, some touching the right and bottom edges."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        width, height = int(rng.integers(40, 90)), int(rng.integers(30, 70))
        image = _png(rng, width, height)
        xywh, labels = [], []
        for k in range(i % 4):
            w, h = float(rng.uniform(4, width / 2)), float(rng.uniform(4, height / 2))
            x = width - w if k == 2 else float(rng.uniform(0, width - w))
            y = height - h if k == 2 else float(rng.uniform(0, height - h))
            xywh.append([x, y, w, h])
            labels.append(SHAPES[(i + k) % 3])
        boxes = build_boxes(np.array(xywh).reshape(-1, 4), labels, width, height)
        rows.append(
            {
                "record_id": make_record_id(image),
                "kind": "image",
                "image": image,
                "mime": "image/png",
                "width": width,
                "height": height,
                "label": labels[0] if labels else "none",
                "label_source": "human",
                "boxes": boxes,
            }
        )
    return pa.Table.from_pylist(rows, schema=RECORD_SCHEMA)


def _box_release(tmp_path: Path) -> DataRoot:
    root = DataRoot(str(tmp_path / "root"))
    build_release(root, "shapes", box_records(), ReleaseConfig(description="Shapes.", licence="CC0-1.0"))
    return root


def _release_boxes(root: DataRoot) -> dict[str, dict]:
    release = load_release(root, "shapes")
    table = pa.concat_tables([release.train, release.val, release.test])
    return {r["record_id"]: r for r in table.select(["record_id", "width", "height", "boxes", "split"]).to_pylist()}


def test_coco_export_reads_with_pycocotools_and_matches_the_release(tmp_path):
    root = _box_release(tmp_path)
    out = export_release(root, "shapes", "v0001", "coco", str(tmp_path / "coco"))
    truth = _release_boxes(root)
    labels = out["labels"]
    assert (
        labels[: len(load_release(root, "shapes").manifest["labels"])]
        == load_release(root, "shapes").manifest["labels"]
    )
    seen = set()
    for split in ("train", "val", "test"):
        coco = COCO(str(tmp_path / "coco" / "annotations" / f"instances_{split}.json"))
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == labels
        for image in coco.loadImgs(coco.getImgIds()):
            rid = image["flywheel_record_id"]
            seen.add(rid)
            row = truth[rid]
            assert row["split"] == split and (image["width"], image["height"]) == (row["width"], row["height"])
            assert (tmp_path / "coco" / split / image["file_name"]).is_file()
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
            got = [(labels[a["category_id"] - 1], a["bbox"], a["area"], a["iscrowd"]) for a in anns]
            want = [(b["label"], [b["x"], b["y"], b["w"], b["h"]], b["w"] * b["h"], 0) for b in row["boxes"]]
            assert got == want
    assert seen == set(truth)
    assert verify_export(DataRoot(str(tmp_path / "coco")))["splits"]["val"] > 0


def read_yolo(folder: Path) -> dict[str, tuple[str, list[tuple[str, list[float]]]]]:
    """A YOLO reader as Ultralytics reads a dataset: data.yaml's names and split folders, images/ -> labels/
    by replacing the folder and the extension; record_id -> (split, [(class name, [cx, cy, w, h])])."""
    data = yaml.safe_load((folder / "data.yaml").read_text())
    names = data["names"]
    out = {}
    for split in ("train", "val", "test"):
        if split not in data:
            continue
        for image in sorted((folder / data[split]).iterdir()):
            label_file = Path(str(image.parent).replace("/images/", "/labels/")) / f"{image.stem}.txt"
            boxes = []
            for line in label_file.read_text().splitlines():
                index, *values = line.split()
                boxes.append((names[int(index)], [float(v) for v in values]))
            out[image.stem] = (split, boxes)
    return out


def test_yolo_export_reads_back_and_round_trips_to_the_same_boxes(tmp_path):
    root = _box_release(tmp_path)
    out = export_release(root, "shapes", "v0001", "yolo", str(tmp_path / "yolo"))
    data = yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())
    assert data["nc"] == len(out["labels"]) and list(data["names"].values()) == out["labels"]
    truth = _release_boxes(root)
    found = read_yolo(tmp_path / "yolo")
    assert set(found) == set(truth) and out["splits"]["val"] > 0
    for rid, (split, boxes) in found.items():
        row = truth[rid]
        assert split == row["split"] and [b[0] for b in boxes] == [b["label"] for b in row["boxes"]]
        back = [[cx - w / 2, cy - h / 2, w, h] for _, (cx, cy, w, h) in boxes]
        want = [[b["x_norm"], b["y_norm"], b["w_norm"], b["h_norm"]] for b in row["boxes"]]
        assert np.allclose(np.array(back).reshape(-1, 4), np.array(want).reshape(-1, 4), atol=1e-6, rtol=0)
    again = export_release(root, "shapes", "v0001", "yolo", str(tmp_path / "yolo"))
    assert again["unchanged"] and again["files"] == out["files"]


def test_a_release_without_boxes_or_without_val_images_is_refused_and_nothing_is_written(tmp_path):
    root = DataRoot(str(tmp_path / "root"))
    build_release(root, "animals", make_records(30, seed=1), ReleaseConfig())
    for fmt in ("coco", "yolo"):
        with pytest.raises(ValueError, match="release animals/v0001 has no boxes column") as caught:
            export_release(root, "animals", "v0001", fmt, str(tmp_path / fmt))
        assert "\n" not in str(caught.value) and not (tmp_path / fmt).exists()
    records = box_records(12)
    build_release(root, "tiny", records, ReleaseConfig(train=0.8, val=0.0, test=0.2))
    with pytest.raises(ValueError, match="release tiny/v0001 has an empty val split"):
        export_release(root, "tiny", "v0001", "coco", str(tmp_path / "tiny"))
    half = records.set_column(
        records.schema.get_field_index("boxes"),
        "boxes",
        pa.array([None, *records["boxes"].to_pylist()[1:]], BOXES_TYPE),
    )
    build_release(root, "half", half, ReleaseConfig())
    with pytest.raises(ValueError, match=r"record \w+ \(\w+\) has no boxes"):
        export_release(root, "half", "v0001", "yolo", str(tmp_path / "half"))


def test_the_cli_exports_coco_and_yolo_and_refuses_a_class_label_release_in_one_line(tmp_path):
    from pipelines.cli_export import export_command

    app = typer.Typer()
    app.command("export")(export_command)
    app.command("noop")(lambda: None)
    root = _box_release(tmp_path)
    build_release(root, "animals", make_records(30, seed=1), ReleaseConfig())
    runner = CliRunner()
    base = ["--data-root", root.url]
    for fmt in ("coco", "yolo"):
        out = runner.invoke(app, ["export", "shapes@v1", "--format", fmt, "--to", str(tmp_path / fmt), *base])
        assert out.exit_code == 0, out.output
        assert json.loads(out.output)["format"] == fmt and (tmp_path / fmt / "export.json").exists()
    assert read_yolo(tmp_path / "yolo").keys() == _release_boxes(root).keys()
    out = runner.invoke(app, ["export", "animals@v1", "--format", "coco", "--to", str(tmp_path / "no"), *base])
    assert out.exit_code == 2 and "has no boxes column" in out.output and len(out.output.strip().splitlines()) == 1
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("fmt", ["coco", "yolo"])
def test_written_boxes_are_read_back_and_a_changed_box_is_named(tmp_path, fmt):
    from corpus.exports.box_formats import check_box_files, select_box_rows, write_coco, write_yolo
    from corpus.exports.rows import select_rows

    root = _box_release(tmp_path)
    release = load_release(root, "shapes")
    rows = select_box_rows(release, select_rows(release))
    files = dict((write_coco if fmt == "coco" else write_yolo)(rows, release.manifest))
    check_box_files(fmt, rows, list(files), files.__getitem__)
    if fmt == "coco":
        path = "annotations/instances_val.json"
        document = json.loads(files[path])
        document["annotations"][0]["bbox"][0] += 0.5  # half a pixel to the right
        files[path] = json.dumps(document).encode()
    else:
        path = next(p for p, data in files.items() if p.startswith("labels/val/") and data)
        other = (int(files[path][:1]) + 1) % len(rows.labels)  # the first box's class changed
        files[path] = str(other).encode() + files[path][1:]
    with pytest.raises(ValueError, match=f"{path}: the boxes of .* are not the release's"):
        check_box_files(fmt, rows, list(files), files.__getitem__)


def test_hf_export_of_boxes_loads_with_datasets_as_object_detection_features(tmp_path):
    import datasets

    root = _box_release(tmp_path)
    out = export_release(root, "shapes", "v0001", "hf", str(tmp_path / "hf"))
    ds = datasets.load_dataset(str(tmp_path / "hf"), cache_dir=str(tmp_path / "hf-cache"))
    labels = out["labels"]
    objects = ds["train"].features["objects"]
    assert objects["bbox"] == datasets.List(datasets.List(datasets.Value("float32"), length=4))
    assert objects["category"] == datasets.List(datasets.ClassLabel(names=labels))
    assert ds["train"].features["label"].names == labels and isinstance(ds["train"].features["image"], datasets.Image)
    truth, seen = _release_boxes(root), set()
    for split, name in (("train", "train"), ("val", "validation"), ("test", "test")):
        for row in ds[name]:
            seen.add(row["record_id"])
            want = truth[row["record_id"]]
            assert want["split"] == split and row["image"].size == (want["width"], want["height"])
            assert [labels[c] for c in row["objects"]["category"]] == [b["label"] for b in want["boxes"]]
            got = np.array(row["objects"]["bbox"], dtype=np.float32).reshape(-1, 4)
            bbox = [[b["x"], b["y"], b["w"], b["h"]] for b in want["boxes"]]  # COCO pixels, top-left first
            assert np.array_equal(got, np.array(bbox, dtype=np.float32).reshape(-1, 4))
    assert seen == set(truth) and sum(len(r["boxes"]) for r in truth.values()) > 0
    card = (tmp_path / "hf" / "README.md").read_text()
    assert "`bbox` as COCO's `[x, y, w, h]` in pixels" in card

"""Box export formats: COCO (instances JSON per split) and YOLO (images/ + labels/ + data.yaml) of a release
whose records carry boxes (corpus.boxes), checked before anything is written.

coco: annotations/instances_<split>.json + <split>/<record_id>.<ext>, the COCO 2017 layout; category ids are
1 + the index in the export's label list (COCO keeps 0 free), image ids 1.. in record_id order.
yolo: images/<split>/<record_id>.<ext>, labels/<split>/<record_id>.txt (`class cx cy w h`, normalised; an
image without objects has an empty file) and data.yaml (split folders, nc, names: class index -> name).
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from corpus.box_formats import boxes_from_yolo, coco_bbox, yolo_line
from corpus.boxes import BOX_RELEASE_SCHEMA, check_box_release_table
from corpus.exports.formats import SPLIT_NAMES, Files
from corpus.exports.rows import ExportRows, image_extension
from corpus.releases.versions import Release

BOX_FORMATS = ("coco", "yolo")
_BOX_COLUMNS = ["record_id", "image", "mime", "width", "height", "boxes"]


def _release_name(release: Release) -> str:
    return f"release {release.manifest['dataset']}/{release.version}"


def _check_split_boxes(name: str, split: str, table: pa.Table) -> None:
    """Every image row has boxes (an empty list for no object) and a size, and its boxes pass
    corpus.boxes.check_box_release_table."""
    for column in ("boxes", "width", "height"):
        missing = pc.is_null(table.column(column))
        if pc.any(missing).as_py():
            rid = table.filter(missing).column("record_id")[0].as_py()
            raise ValueError(f"{name}: record {rid} ({split}) has no {column}; every image of a box release needs one")
    boxes = table.select(BOX_RELEASE_SCHEMA.names).cast(BOX_RELEASE_SCHEMA)
    try:
        check_box_release_table(boxes)
    except ValueError as exc:
        raise ValueError(f"{name} ({split}): {exc}") from None


def has_boxes(rows: ExportRows) -> bool:
    """True when some image row of `rows` carries boxes (a detection release)."""
    return any(t.column("boxes").null_count < t.num_rows for t in rows.splits.values())


def with_box_labels(release: Release, rows: ExportRows) -> ExportRows:
    """`rows` with every split's boxes checked (`_check_split_boxes`) and the label list extended by every box
    label it lacks (sorted), marked `boxes`; ValueError naming the release and the record otherwise."""
    name, found = _release_name(release), set()
    for split, table in rows.splits.items():
        _check_split_boxes(name, split, table)
        found |= {box["label"] for boxes in table.column("boxes").to_pylist() for box in boxes}
    labels = list(rows.labels) + sorted(found - set(rows.labels))
    return ExportRows(labels=labels, splits=rows.splits, skipped=rows.skipped, boxes=True)


def select_box_rows(release: Release, rows: ExportRows) -> ExportRows:
    """`rows` checked for a box export (`with_box_labels`).

    ValueError, one line naming the release: no boxes at all (a class-label release), an image row without
    boxes or size, boxes that fail the box schema, or an empty train or validation split."""
    name = _release_name(release)
    if not has_boxes(rows):
        raise ValueError(
            f"{name} has no boxes column (its records carry no boxes): coco and yolo export boxes; "
            "export it as imagefolder, hf, webdataset or csv"
        )
    for split in ("train", "val"):
        if rows.splits[split].num_rows == 0:
            raise ValueError(f"{name} has an empty {split} split; coco and yolo exports need train and val images")
    return with_box_labels(release, rows)


def _image_file(row: dict[str, Any]) -> str:
    return f"{row['record_id']}.{image_extension(row['image'], row['mime'])}"


def coco_document(table: pa.Table, rows: ExportRows, manifest: dict[str, Any], split: str) -> dict[str, Any]:
    """The COCO instances document of one split: images, annotations (bbox [x, y, w, h] in pixels, area,
    iscrowd 0), categories; `flywheel_record_id` on each image ties it to the release row."""
    images, annotations = [], []
    for image_id, row in enumerate(table.select(_BOX_COLUMNS).to_pylist(), 1):
        file_name = _image_file(row)
        images.append(
            {
                "id": image_id,
                "file_name": file_name,
                "width": row["width"],
                "height": row["height"],
                "license": 1,
                "flywheel_record_id": row["record_id"],
            }
        )
        for box in row["boxes"]:
            entry = {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": rows.label_index(box["label"]) + 1,
                "bbox": coco_bbox(box),
                "area": float(box["w"] * box["h"]),
                "iscrowd": 0,
            }
            if box.get("score") is not None:
                entry["score"] = float(box["score"])
            annotations.append(entry)
    info = {
        "description": manifest.get("description") or f"{manifest['dataset']} {manifest['version']}",
        "version": manifest["version"],
        "date_created": manifest.get("created_at"),
        "flywheel_release_id": manifest["release_id"],
        "split": split,
    }
    return {
        "info": info,
        "licenses": [{"id": 1, "name": manifest.get("licence") or "unknown", "url": ""}],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": lab, "supercategory": ""} for i, lab in enumerate(rows.labels)],
    }


def write_coco(rows: ExportRows, manifest: dict[str, Any]) -> Files:
    """annotations/instances_<split>.json (every split, an empty one too) and the images under <split>/."""
    for split, table in rows.splits.items():
        name = SPLIT_NAMES["coco"][split]
        for row in table.select(["record_id", "image", "mime"]).to_pylist():
            yield f"{name}/{_image_file(row)}", row["image"]
        document = coco_document(table, rows, manifest, name)
        # compact, as COCO files are: with an indent, json falls back to its pure-Python encoder (5x slower here)
        text = json.dumps(document, sort_keys=True, separators=(",", ":"))
        yield f"annotations/instances_{name}.json", text.encode()


def yolo_data_yaml(rows: ExportRows, manifest: dict[str, Any]) -> bytes:
    """data.yaml as Ultralytics reads it. No `path` key: then the folder of data.yaml is the dataset root
    (a relative `path` would be resolved under Ultralytics' own datasets folder). Names are JSON strings, which
    YAML reads as they are."""
    lines = [f"# {manifest['dataset']} {manifest['version']} ({manifest['release_id']}), exported by Flywheel"]
    names = SPLIT_NAMES["yolo"]
    lines += [f"{names[s]}: images/{names[s]}" for s, t in rows.splits.items() if t.num_rows]
    lines += [f"nc: {len(rows.labels)}", "names:"]
    lines += [f"  {i}: {json.dumps(lab)}" for i, lab in enumerate(rows.labels)]
    return ("\n".join(lines) + "\n").encode()


def write_yolo(rows: ExportRows, manifest: dict[str, Any]) -> Files:
    """images/<split>/ and labels/<split>/ (one .txt per image, `class cx cy w h` normalised) and data.yaml."""
    for split, table in rows.splits.items():
        name = SPLIT_NAMES["yolo"][split]
        for row in table.select(_BOX_COLUMNS).to_pylist():
            yield f"images/{name}/{_image_file(row)}", row["image"]
            text = "".join(yolo_line(rows.label_index(b["label"]), b) + "\n" for b in row["boxes"])
            yield f"labels/{name}/{row['record_id']}.txt", text.encode()
    yield "data.yaml", yolo_data_yaml(rows, manifest)


def _expected_boxes(rows: ExportRows) -> dict[str, tuple[int, int, list[dict[str, Any]]]]:
    return {
        r["record_id"]: (r["width"], r["height"], r["boxes"])
        for table in rows.splits.values()
        for r in table.select(["record_id", "width", "height", "boxes"]).to_pylist()
    }


def _coco_boxes(data: bytes) -> dict[str, list[tuple[str, list[float]]]]:
    document = json.loads(data)
    names = {c["id"]: c["name"] for c in document["categories"]}
    ids = {image["id"]: image["flywheel_record_id"] for image in document["images"]}
    found: dict[str, list[tuple[str, list[float]]]] = {rid: [] for rid in ids.values()}
    for ann in document["annotations"]:
        found[ids[ann["image_id"]]].append((names[ann["category_id"]], ann["bbox"]))
    return found


def check_box_files(fmt: str, rows: ExportRows, files: list[str], read: Any) -> None:
    """Read the written annotations back as their consumer would: every image's boxes must be the release's,
    exactly (COCO: pixels, as JSON keeps floats) or within 1e-6 normalised (YOLO's 9 decimals); ValueError names
    the file and the record that differ."""
    expected = _expected_boxes(rows)
    for path in files:
        if fmt == "coco" and path.startswith("annotations/"):
            for rid, boxes in _coco_boxes(read(path)).items():
                want = [(b["label"], coco_bbox(b)) for b in expected[rid][2]]
                if boxes != want:
                    raise ValueError(f"{path}: the boxes of {rid} are not the release's")
        elif fmt == "yolo" and path.startswith("labels/"):
            rid = path.rsplit("/", 1)[-1].removesuffix(".txt")
            width, height, want = expected[rid]
            try:
                got = boxes_from_yolo(read(path).decode(), rows.labels, width, height)
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}") from None
            keys = ("x_norm", "y_norm", "w_norm", "h_norm")
            same = [b["label"] for b in got] == [b["label"] for b in want] and all(
                abs(g[k] - w[k]) <= 1e-6 for g, w in zip(got, want, strict=True) for k in keys
            )
            if not same:
                raise ValueError(f"{path}: the boxes of {rid} are not the release's")

"""Box formats benchmark: Flywheel's COCO export and COCO import beside plain loops doing the same work, in one run.

export: a release of n images with 0-3 boxes each. Flywheel runs export_release(fmt="coco") (load verified,
check the boxes, write images + instances JSON per split, read every file back and compare each image with the
release, export.json); the peer writes the same images and an instances JSON built by a plain loop with
json.dump, no checks. import: the COCO export read back. Flywheel runs run_import (every image read, hashed,
its boxes checked against its size, raw Parquet shards and the import state written); the peer is pycocotools'
COCO() index plus, per image, the file's bytes, a SHA-256 id and its boxes in pixels and normalised, written
as one Parquet file (no checks, no state). Figures are images/s, median of the repeats, interleaved so that
noise hits both; ratio = Flywheel over the peer (higher is better; below 1.0 is the cost of the checks).

Run: `make bench-box-formats` (QUICK=1 for the small size), or `.venv/bin/python bench/box_formats.py [--quick]`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "corpus"))

import pyarrow as pa
import pyarrow.parquet as pq
from pycocotools.coco import COCO
from test_box_exports import box_records

from corpus.exports.export import export_release
from corpus.exports.rows import image_extension
from corpus.releases.build import build_release
from corpus.releases.config import ReleaseConfig
from corpus.releases.versions import load_release
from corpus.store import DataRoot
from crawlers.importers.config import ImportConfig
from crawlers.importers.importer import run_import


def _plain_coco(rows: list[dict], labels: list[str], out: Path) -> None:
    out.mkdir(parents=True)
    images, anns = [], []
    for i, row in enumerate(rows, 1):
        name = f"{row['record_id']}.{image_extension(row['image'], row['mime'])}"
        (out / name).write_bytes(row["image"])
        images.append({"id": i, "file_name": name, "width": row["width"], "height": row["height"]})
        for b in row["boxes"]:
            bbox = [b["x"], b["y"], b["w"], b["h"]]
            cat = labels.index(b["label"]) + 1
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cat, "bbox": bbox, "area": b["w"] * b["h"]})
    cats = [{"id": i + 1, "name": lab} for i, lab in enumerate(labels)]
    with open(out / "instances.json", "w") as fh:
        json.dump({"images": images, "annotations": anns, "categories": cats}, fh)


def _plain_read(instances: Path, images: Path, out: Path) -> int:
    """pycocotools' index, then per image: bytes, SHA-256 id, boxes in pixels and normalised; one Parquet file."""
    coco, rows = COCO(str(instances)), []
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    for image in coco.loadImgs(coco.getImgIds()):
        data = (images / image["file_name"]).read_bytes()
        w, h = image["width"], image["height"]
        boxes = []
        for a in coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]])):
            x, y, bw, bh = a["bbox"]
            boxes.append({"label": names[a["category_id"]], "x": x, "y": y, "w": bw, "h": bh})
            boxes[-1].update({"x_norm": x / w, "y_norm": y / h, "w_norm": bw / w, "h_norm": bh / h})
        rows.append({"record_id": hashlib.sha256(data).hexdigest()[:32], "image": data, "boxes": boxes})
    pq.write_table(pa.Table.from_pylist(rows), out)
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", default=bool(os.environ.get("QUICK")))
    n, repeats = (300, 3) if parser.parse_args().quick else (2000, 3)
    with tempfile.TemporaryDirectory() as tmp:
        root = DataRoot(f"{tmp}/root")
        build_release(root, "boxes", box_records(n, seed=1), ReleaseConfig(train=0.5, val=0.5, test=0.0))
        release = load_release(root, "boxes")
        columns = ["record_id", "image", "mime", "width", "height", "boxes"]
        splits = {s: release.split(s).select(columns).to_pylist() for s in ("train", "val")}
        found = {b["label"] for rows in splits.values() for r in rows for b in r["boxes"]}
        labels = list(release.manifest["labels"]) + sorted(found - set(release.manifest["labels"]))
        times: dict[str, list[float]] = {"fw_export": [], "peer_export": [], "fw_import": [], "peer_import": []}
        for r in range(repeats):
            t0 = time.perf_counter()
            export_release(root, "boxes", 1, "coco", f"{tmp}/fw{r}")
            times["fw_export"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for split, rows in splits.items():
                _plain_coco(rows, labels, Path(tmp) / f"plain{r}" / split)
            times["peer_export"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for split in splits:
                cfg = ImportConfig(source=f"{tmp}/fw{r}/annotations/instances_{split}.json", name=f"b{r}{split}")
                state = Path(tmp) / f"s{r}{split}.sqlite"
                report = run_import(DataRoot(f"{tmp}/in{r}"), cfg, import_run=f"i{split}", state_path=state)
                assert report["records"] == len(splits[split]) and not report["dropped"], report["dropped_by_reason"]
            times["fw_import"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for split in splits:
                folder = Path(tmp) / f"fw{r}"
                _plain_read(folder / "annotations" / f"instances_{split}.json", folder / split, folder / f"{split}.pq")
            times["peer_import"].append(time.perf_counter() - t0)
    rate = {k: n / statistics.median(v) for k, v in times.items()}
    print(f"images={n} (0-3 boxes each, 40-90 px PNGs), median of {repeats} interleaved repeats, images/s")
    print(
        f"bench box export: flywheel coco={rate['fw_export']:.0f}/s plain json loop={rate['peer_export']:.0f}/s "
        f"ratio={rate['fw_export'] / rate['peer_export']:.2f}"
    )
    print(
        f"bench box import: flywheel coco={rate['fw_import']:.0f}/s "
        f"pycocotools+read+sha256={rate['peer_import']:.0f}/s "
        f"ratio={rate['fw_import'] / rate['peer_import']:.2f}"
    )


if __name__ == "__main__":
    main()

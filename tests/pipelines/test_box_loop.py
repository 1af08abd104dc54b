"""Boxes through the product end to end: a YOLO folder imported (trusted), curated and scrubbed into the pool,
released by the release flow and exported as COCO, read back by pycocotools with the boxes it started with."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from pycocotools.coco import COCO
from typer.testing import CliRunner

from corpus.releases.versions import load_release
from corpus.schema import make_record_id
from corpus.store import DataRoot
from crawlers.importers.config import ImportConfig
from pipelines.cli_import import import_command
from pipelines.config import ImportParams, ReleaseParams
from pipelines.imports import import_flow
from pipelines.release import release_flow

pytestmark = [pytest.mark.prefect, pytest.mark.timeout(300)]
NAMES = ("cat", "dog")


def _yolo_folder(folder: Path, n: int = 24) -> dict[str, list[tuple[str, list[float]]]]:
    """n distinct noise images, 80x64, with 1-2 boxes each; record_id -> [(name, [x, y, w, h] in pixels)]."""
    rng = np.random.default_rng(11)
    truth = {}
    for i in range(n):
        pixels = rng.integers(0, 255, size=(64, 80, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="PNG")
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "images" / f"{i}.png").write_bytes(buf.getvalue())
        lines, boxes = [], []
        for k in range(1 + i % 2):
            cls = (i + k * (i % 3 == 0)) % 2  # one class per image, so the majority label is the box class
            w, h = 16.0 + 4 * k, 8.0 + 2 * (i % 5)
            x, y = 4.0 + 2 * i, 40.0 - 8 * k
            lines.append(f"{cls} {(x + w / 2) / 80} {(y + h / 2) / 64} {w / 80} {h / 64}")
            boxes.append((NAMES[cls], [x, y, w, h]))
        (folder / "labels").mkdir(exist_ok=True)
        (folder / "labels" / f"{i}.txt").write_text("\n".join(lines) + "\n")
        truth[make_record_id(buf.getvalue())] = boxes
    (folder / "classes.txt").write_text("\n".join(NAMES) + "\n")
    return truth


def test_a_yolo_folder_imported_released_and_exported_as_coco_keeps_its_boxes(prefect_api, tmp_path):
    truth = _yolo_folder(tmp_path / "boxes")
    root = DataRoot(str(tmp_path / "data"))
    config = ImportConfig(source=str(tmp_path / "boxes"), label_policy="trusted")
    imported = import_flow(ImportParams(source=config, data_root=root.url))
    assert imported["import"]["kind"] == "yolo" and imported["import"]["records"] == len(truth)
    params = ReleaseParams(dataset="objects", pool=imported["pool"], exports=["coco", "yolo"], data_root=root.url)
    manifest = release_flow(params)
    assert manifest["rows"]["val"] > 0 and manifest["labels"] == list(NAMES)
    coco_dir = Path(root.local_path(f"exports/objects/{manifest['version']}/coco"))
    assert manifest["exports"]["coco"].endswith("exports/objects/v0001/coco") and coco_dir.is_dir()
    assert (Path(root.local_path("exports/objects/v0001/yolo")) / "data.yaml").is_file()
    found = {}
    for split in ("train", "val", "test"):
        coco = COCO(str(coco_dir / "annotations" / f"instances_{split}.json"))
        names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
        for image in coco.loadImgs(coco.getImgIds()):
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
            found[image["flywheel_record_id"]] = [(names[a["category_id"]], a["bbox"]) for a in anns]
    assert found.keys() == truth.keys()
    for rid, boxes in truth.items():
        assert [n for n, _ in found[rid]] == [n for n, _ in boxes]
        assert np.allclose([b for _, b in found[rid]], [b for _, b in boxes], atol=1e-6)

    # One image's boxes edited in the source: the re-import adds no row, and the next release has the new boxes.
    (tmp_path / "boxes" / "labels" / "0.txt").write_text("1 0.5 0.5 0.25 0.25\n")
    again = import_flow(ImportParams(source=config, data_root=root.url))
    assert (again["import"]["records"], again["import"]["labels_changed"], again["pool"]) == (0, 1, None)
    second = release_flow(ReleaseParams(dataset="objects", pool=imported["pool"], data_root=root.url))
    release = load_release(root, "objects", second["version"])
    rows = {r["record_id"]: r for split in (release.train, release.val, release.test) for r in split.to_pylist()}
    edited = next(iter(truth))
    assert second["version"] == "v0002" and len(rows) == len(truth)
    assert [[b["label"], b["x"], b["y"], b["w"], b["h"]] for b in rows[edited]["boxes"]] == [["dog", 30, 24, 20, 16]]
    assert all(len(rows[rid]["boxes"]) == len(boxes) for rid, boxes in list(truth.items())[1:])


def test_the_import_command_names_each_malformed_annotation_in_one_line(prefect_api, tmp_path, monkeypatch):
    from corpus.settings import get_settings

    monkeypatch.setenv("FLYWHEEL_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("FLYWHEEL_WORK_DIR", str(tmp_path / "work"))
    get_settings.cache_clear()
    _yolo_folder(tmp_path / "boxes", n=6)
    bad = tmp_path / "boxes" / "labels" / "3.txt"
    bad.write_text(bad.read_text() + "0 0.5 0.5 0.25\n")
    app = typer.Typer()
    app.command("import")(import_command)
    app.command("noop")(lambda: None)  # two commands, so `import` is a sub-command as under `flywheel`
    out = CliRunner().invoke(app, ["import", str(tmp_path / "boxes"), "--labels", "trusted"])
    get_settings.cache_clear()
    assert out.exit_code == 0, out.output
    refused = [line for line in out.output.splitlines() if line.startswith("refused:")]
    assert refused == [f"refused: {bad}: line 3: needs 5 values 'class cx cy w h', got 4: '0 0.5 0.5 0.25'"]
    assert '"kept": 5' in out.output and '"bad_box": 1' in out.output

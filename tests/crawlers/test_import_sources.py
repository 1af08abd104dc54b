"""Importing a team's own files: each source kind from real files, re-imports, changed files, labels, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpus.schema import ANNOTATION_SCHEMA, PREDICTION_SCHEMA, RECORD_SCHEMA, check_records, make_record_id
from corpus.store import DataRoot
from crawlers.importers.config import ImportConfig
from crawlers.importers.importer import import_to_root
from crawlers.importers.sources import ImportSourceError
from tests.crawlers.import_files import FileServer, jpeg_bytes, make_imagefolder, write_jpeg

pytestmark = pytest.mark.timeout(120)


def run(tmp_path: Path, source: str | Path, run_name: str = "import-1", **options) -> tuple[DataRoot, dict]:
    root = DataRoot(str(tmp_path / "data"))
    cfg = ImportConfig(source=str(source), **options)
    report = import_to_root(root, cfg, import_run=run_name, work_dir=tmp_path / "work")
    return root, report


def raw(root: DataRoot, report: dict) -> pa.Table:
    return root.read_table(report["output"])


def test_an_imagefolder_tree_becomes_raw_shards_with_class_labels_as_preannotations(tmp_path):
    tree = make_imagefolder(tmp_path / "pets")
    (tmp_path / "pets" / "cat" / "notes.txt").write_text("not an image")
    root, report = run(tmp_path, tree, shard_rows=5)
    assert report["kind"] == "imagefolder" and report["records"] == 12 and report["skipped"] == {"not_image": 1}
    assert report["shards_written"] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert root.read_json("raw/import-1/_report.json")["records"] == 12
    table = raw(root, report)
    check_records(pq.read_table(root.path("raw/import-1/part-00000.parquet")))
    assert set(table.column("source").to_pylist()) == {"pets"} and set(table.column("kind").to_pylist()) == {"image"}
    first = table.slice(0, 1).to_pylist()[0]
    assert first["record_id"] == make_record_id(first["image"]) and first["mime"] == "image/jpeg"
    assert first["url"].startswith("file://") and first["crawl_run"] == "import-1"
    labels = root.read_table("imports/pets/labels", schema=PREDICTION_SCHEMA)
    by_id = dict(zip(labels.column("record_id").to_pylist(), labels.column("predicted_label").to_pylist(), strict=True))
    cat = make_record_id((tree / "cat" / "0.jpg").read_bytes())
    assert by_id[cat] == "cat" and sorted(set(by_id.values())) == ["cat", "dog", "fox"] and len(by_id) == 12
    assert not root.exists("annotations")  # pre-annotations are not votes


def test_reimport_adds_nothing_a_touched_file_nothing_and_a_changed_file_one_record(tmp_path):
    tree = make_imagefolder(tmp_path / "pets", per_class=2)
    root, first = run(tmp_path, tree, run_name="import-1")
    assert first["records"] == 6
    _, again = run(tmp_path, tree, run_name="import-2")
    assert again["records"] == 0 and again["unchanged"] == 6 and again["output"] is None
    assert not root.exists("raw/import-2")
    touched = tree / "dog" / "0.jpg"
    os.utime(touched, (1_000_000, 1_000_000))  # a new mtime, the same bytes
    _, third = run(tmp_path, tree, run_name="import-3")
    assert third["records"] == 0 and not root.exists("raw/import-3")
    write_jpeg(tree / "dog" / "1.jpg", seed=999)
    _, fourth = run(tmp_path, tree, run_name="import-4")
    assert fourth["records"] == 1 and fourth["unchanged"] == 5
    assert raw(root, fourth).column("record_id").to_pylist() == [make_record_id(jpeg_bytes(999))]


def test_labels_as_annotator_land_in_annotations_with_their_origin(tmp_path):
    tree = make_imagefolder(tmp_path / "pets", per_class=2)
    root, report = run(tmp_path, tree, name="shelter", label_policy="annotator")
    assert report["labels"] == 6 and report["label_origin"] == "imported:shelter"
    annotations = root.read_table("annotations", schema=ANNOTATION_SCHEMA)
    assert annotations.num_rows == 6
    assert set(annotations.column("annotator").to_pylist()) == {"imported:shelter"}
    assert set(annotations.column("project_id").to_pylist()) == {0}
    assert all(i < 0 for i in annotations.column("annotation_id").to_pylist())  # never a Label Studio id
    assert set(annotations.column("record_id").to_pylist()) == set(raw(root, report).column("record_id").to_pylist())


def test_a_jsonl_manifest_of_local_paths_with_labels_captions_and_metadata(tmp_path):
    images = tmp_path / "imgs"
    for n in range(3):
        write_jpeg(images / f"{n}.jpg", seed=n + 10)
    rows = [
        {"path": "imgs/0.jpg", "label": "red", "caption": "a red thing", "photographer": "ann"},
        {"path": str(images / "1.jpg"), "label": "blue"},
        {"path": "imgs/2.jpg"},
        {"path": "imgs/missing.jpg", "label": "red"},
    ]
    manifest = tmp_path / "list.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n")
    root, report = run(tmp_path, manifest)
    assert report["kind"] == "manifest" and report["records"] == 3
    assert report["dropped_by_reason"] == {"bad_manifest_row": 1, "missing_file": 1} and report["refused"][0][
        "locator"
    ].endswith("missing.jpg")
    table = raw(root, report)
    assert table.column("caption").to_pylist() == ["a red thing", None, None]
    meta = root.read_table("imports/list/metadata", schema=None).to_pylist()
    assert json.loads(meta[0]["metadata"]) == {"photographer": "ann"}
    labels = root.read_table("imports/list/labels", schema=PREDICTION_SCHEMA)
    assert labels.column("predicted_label").to_pylist() == ["red", "blue"]


def test_a_csv_manifest_of_urls_goes_through_the_ssrf_guard_and_robots(tmp_path):
    site = tmp_path / "site"
    for n in range(2):
        write_jpeg(site / "img" / f"{n}.jpg", seed=n + 20)
    write_jpeg(site / "private" / "p.jpg", seed=30)
    (site / "robots.txt").write_text("User-agent: *\nDisallow: /private/\n")
    with FileServer(site) as server:
        urls = [
            f"{server.url}/img/0.jpg",
            f"{server.url}/img/1.jpg",
            f"{server.url}/img/gone.jpg",
            f"{server.url}/private/p.jpg",
            "http://10.0.0.1/x.jpg",
            "http://169.254.169.254/latest/meta-data/",
            "http://127.0.0.1:9/other-port.jpg",
        ]
        manifest = tmp_path / "urls.csv"
        manifest.write_text("url,label,shot_on\n" + "\n".join(f"{u},thing,2024" for u in urls) + "\n")
        root, report = run(tmp_path, manifest, allowed_private_hosts=[server.url], fetch_delay_s=0)
        assert report["records"] == 2
        assert report["dropped_by_reason"] == {
            "http/404": 1,
            "robots": 1,
            "ssrf/loopback": 1,
            "ssrf/metadata": 1,
            "ssrf/private": 1,
        }
        assert set(raw(root, report).column("url").to_pylist()) == set(urls[:2])
        _, again = run(tmp_path, manifest, run_name="import-2", allowed_private_hosts=[server.url], fetch_delay_s=0)
        assert again["records"] == 0 and again["unchanged"] == 2


def test_a_label_studio_export_brings_its_choices(tmp_path):
    write_jpeg(tmp_path / "media" / "a.jpg", seed=40)
    write_jpeg(tmp_path / "media" / "b.jpg", seed=41)

    def choice(label: str, cancelled: bool = False) -> dict:
        result = [{"type": "choices", "value": {"choices": [label]}, "from_name": "label", "to_name": "image"}]
        return {"result": result, "was_cancelled": cancelled}

    tasks = [
        {"id": 1, "data": {"image": "/data/local-files/?d=media/a.jpg"}, "annotations": [choice("cat"), choice("cat")]},
        {"id": 2, "data": {"image": "media/b.jpg"}, "annotations": [choice("dog", cancelled=True)]},
    ]
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    root, report = run(tmp_path, export, label_policy="trusted")
    assert report["kind"] == "label-studio" and report["records"] == 2 and report["labels"] == 1
    annotations = root.read_table("annotations", schema=ANNOTATION_SCHEMA).to_pylist()
    assert [(a["record_id"], a["label"], a["annotator"]) for a in annotations] == [
        (make_record_id(jpeg_bytes(40)), "cat", "imported:export")
    ]


def test_a_coco_file_gives_image_labels_and_keeps_its_boxes(tmp_path):
    write_jpeg(tmp_path / "coco" / "images" / "1.jpg", seed=50)
    write_jpeg(tmp_path / "coco" / "images" / "2.jpg", seed=51)
    doc = {
        "images": [{"id": 1, "file_name": "1.jpg"}, {"id": 2, "file_name": "2.jpg"}],
        "categories": [{"id": 7, "name": "car"}, {"id": 8, "name": "bike"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 2, 10, 10]},
            {"id": 2, "image_id": 1, "category_id": 7, "bbox": [20, 2, 10, 10]},
            {"id": 3, "image_id": 1, "category_id": 8, "bbox": [5, 5, 3, 3]},
        ],
    }
    (tmp_path / "coco" / "instances.json").write_text(json.dumps(doc))
    root, report = run(tmp_path, tmp_path / "coco" / "instances.json")
    assert report["kind"] == "coco" and report["records"] == 2 and report["labels"] == 1
    labels = root.read_table("imports/instances/labels", schema=PREDICTION_SCHEMA)
    assert labels.column("predicted_label").to_pylist() == ["car"]
    rows = {r["record_id"]: r for r in raw(root, report).to_pylist()}
    first, second = rows[make_record_id(jpeg_bytes(50))], rows[make_record_id(jpeg_bytes(51))]
    box = first["boxes"][0]
    assert [box["label"], box["x"], box["y"], box["w"], box["h"]] == ["car", 1.0, 2.0, 10.0, 10.0]
    assert len(first["boxes"]) == 3 and second["boxes"] == [] and first["label_source"] == "imported:instances"


def _write_hf_parquet(folder: Path, with_info_file: bool) -> None:
    """A Parquet shard the way `datasets` writes one: an Image struct column, a ClassLabel int column, and the
    features in the schema's `huggingface` metadata (or dataset_info.json)."""
    features = {"image": {"_type": "Image"}, "label": {"names": ["ant", "bee"], "_type": "ClassLabel"}}
    images = [{"bytes": jpeg_bytes(60 + i), "path": f"{i}.jpg"} for i in range(3)]
    table = pa.table(
        {
            "image": pa.array(images, pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            "label": pa.array([0, 1, -1], pa.int64()),
        }
    )
    if with_info_file:
        (folder / "dataset_info.json").parent.mkdir(parents=True, exist_ok=True)
        (folder / "dataset_info.json").write_text(json.dumps({"features": features}))
    else:
        meta = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
        table = table.replace_schema_metadata(meta)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / "data" / "train-00000-of-00001.parquet")


@pytest.mark.parametrize("with_info_file", [False, True])
def test_a_hugging_face_parquet_folder_with_class_label_names(tmp_path, with_info_file):
    _write_hf_parquet(tmp_path / "bees", with_info_file)
    root, report = run(tmp_path, tmp_path / "bees")
    assert report["kind"] == "hf" and report["records"] == 3 and report["labels"] == 2
    labels = root.read_table("imports/bees/labels", schema=PREDICTION_SCHEMA)
    assert labels.column("predicted_label").to_pylist() == ["ant", "bee"]
    assert raw(root, report).column("record_id").to_pylist()[0] == make_record_id(jpeg_bytes(60))
    _, again = run(tmp_path, tmp_path / "bees", run_name="import-2")
    assert again["records"] == 0


@pytest.mark.s3
def test_an_s3_prefix_through_the_data_roots_settings(tmp_path, moto_s3):
    from corpus.settings import Settings
    from corpus.store import s3_storage_options

    bucket = moto_s3.create_bucket("import-src")
    client = moto_s3.client()
    for n, name in enumerate(("a/1.jpg", "a/2.jpg", "b/3.jpg", "b/readme.md")):
        client.put_object(Bucket=bucket, Key=f"photos/{name}", Body=jpeg_bytes(70 + n))
    settings = Settings(
        s3_endpoint_url=moto_s3.endpoint_url,
        s3_access_key_id=moto_s3.access_key_id,
        s3_secret_access_key=moto_s3.secret_access_key,
        s3_region=moto_s3.region,
        _env_file=None,
    )
    cfg = ImportConfig(source=f"s3://{bucket}/photos", kind="imagefolder")
    root = DataRoot(str(tmp_path / "data"))
    options = s3_storage_options(settings)
    report = import_to_root(root, cfg, import_run="import-1", work_dir=tmp_path / "w", storage_options=options)
    assert report["records"] == 3 and report["skipped"] == {"not_image": 1}
    assert raw(root, report).column("url").to_pylist()[0] == f"s3://{bucket}/photos/a/1.jpg"
    labels = root.read_table("imports/photos/labels", schema=PREDICTION_SCHEMA)
    assert sorted(labels.column("predicted_label").to_pylist()) == ["a", "a", "b"]
    again = import_to_root(root, cfg, import_run="import-2", work_dir=tmp_path / "w", storage_options=options)
    assert again["records"] == 0 and again["unchanged"] == 3


def _assert_nothing_written(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert not data.exists() or not [p for p in data.rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "nowhere", "nowhere: no such file or folder"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "empty: no images found"),
        (lambda p: (p / "bad.parquet").write_bytes(b"not parquet") and p / "bad.parquet", "bad.parquet: cannot read"),
        (lambda p: (p / "m.csv").write_text("name,label\na.jpg,x\n") and p / "m.csv", "m.csv: no path or url column"),
        (lambda p: (p / "m.jsonl").write_text("{not json\n") and p / "m.jsonl", "m.jsonl: line 1 is not a JSON object"),
    ],
    ids=["missing", "empty-folder", "unreadable-manifest", "no-path-column", "bad-jsonl"],
)
def test_a_source_that_cannot_be_imported_is_one_line_naming_it_and_writes_nothing(tmp_path, make, message):
    source = make(tmp_path)
    with pytest.raises(ImportSourceError) as caught:
        run(tmp_path, source)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    _assert_nothing_written(tmp_path)


def test_raw_shards_conform_to_the_record_schema(tmp_path):
    root, report = run(tmp_path, make_imagefolder(tmp_path / "pets", per_class=1))
    schema = pq.read_schema(root.path(f"{report['output']}/part-00000.parquet"))
    assert schema.remove_metadata().equals(RECORD_SCHEMA.remove_metadata())

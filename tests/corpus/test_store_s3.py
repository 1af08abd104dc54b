"""The Parquet store on an s3:// data root, against a real S3-compatible server (moto) on loopback."""

from __future__ import annotations

import pyarrow as pa
import pytest

from corpus.schema import conform, make_record_id
from corpus.stages import Stage, StageOutput, run_stage
from corpus.store import DataRoot

pytestmark = pytest.mark.s3


def _records(n: int, start: int = 0) -> pa.Table:
    texts = [f"page {i}" for i in range(start, start + n)]
    return conform(
        pa.table({"record_id": [make_record_id(t.encode()) for t in texts], "kind": ["text"] * n, "text": texts})
    )


@pytest.fixture()
def s3_root(moto_s3) -> tuple[DataRoot, str]:
    return moto_s3.open_root("store")


def _keys(moto_s3, bucket: str) -> list[str]:
    pages = moto_s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def test_open_data_root_reaches_the_endpoint_and_keeps_the_secret_out_of_its_url(moto_s3, s3_root):
    root, bucket = s3_root
    assert not root.is_local
    assert root.url == f"s3://{bucket}/flywheel"
    assert moto_s3.secret_access_key not in repr(root) + root.url
    root.write_json("state/x.json", {"a": 1})
    assert _keys(moto_s3, bucket) == ["flywheel/state/x.json"]
    assert root.uri("media/a.jpg") == f"s3://{bucket}/flywheel/media/a.jpg"
    with pytest.raises(ValueError, match="not a local folder"):
        root.local_path("media")


def test_writes_are_whole_objects_and_leave_no_temporary_keys(moto_s3, s3_root):
    root, bucket = s3_root
    root.write_table("raw/run1/part-0000.parquet", _records(3))
    root.write_table("raw/run1/part-0001.parquet", _records(2, start=3))
    root.write_json("raw/run1/_report.json", {"pages": 5})
    root.write_bytes("media/a.jpg", b"\xff\xd8\xff-bytes")
    assert _keys(moto_s3, bucket) == [
        "flywheel/media/a.jpg",
        "flywheel/raw/run1/_report.json",
        "flywheel/raw/run1/part-0000.parquet",
        "flywheel/raw/run1/part-0001.parquet",
    ]
    assert root.read_bytes("media/a.jpg") == b"\xff\xd8\xff-bytes"
    assert root.read_json("raw/run1/_report.json") == {"pages": 5}


def test_list_list_dirs_and_read_table_of_a_folder(s3_root):
    root, _ = s3_root
    root.write_table("raw/run1/part-0000.parquet", _records(3))
    root.write_table("raw/run1/part-0001.parquet", _records(2, start=3))
    root.write_json("raw/run1/_report.json", {})
    root.write_json("raw/run2/_report.json", {})
    assert root.list("raw/run1", ".parquet") == ["raw/run1/part-0000.parquet", "raw/run1/part-0001.parquet"]
    assert root.list("raw/nothing") == []
    assert root.list_dirs("raw") == ["run1", "run2"]
    assert root.list_dirs("nothing") == []
    table = root.read_table("raw/run1")
    assert table.num_rows == 5
    assert sorted(table.column("text").to_pylist()) == [f"page {i}" for i in range(5)]
    assert root.exists("raw/run1") and root.exists("raw/run1/_report.json") and not root.exists("raw/run3")


def test_fingerprint_sees_sizes_and_new_files_but_not_markers(s3_root):
    root, _ = s3_root
    root.write_table("raw/run1/part-0000.parquet", _records(3))
    root.write_json("raw/run1/_report.json", {})
    first = root.fingerprint(["raw/run1", "raw/missing"])
    assert first[0][0] == "/raw/run1/part-0000.parquet" and first[0][1] > 0
    assert first[1] == ["raw/missing", None]
    assert root.fingerprint(["raw/run1/part-0000.parquet"]) == first[:1]
    root.write_json("raw/run1/_SUCCESS", {})  # markers are not inputs
    assert root.fingerprint(["raw/run1", "raw/missing"]) == first
    root.write_table("raw/run1/part-0001.parquet", _records(1, start=9))
    assert len(root.fingerprint(["raw/run1"])) == 2


def test_put_and_get_file_round_trip(tmp_path, moto_s3, s3_root):
    root, bucket = s3_root
    local = tmp_path / "state.sqlite"
    local.write_bytes(b"sqlite bytes")
    root.put_file(str(local), "state/crawl/site.sqlite")
    assert _keys(moto_s3, bucket) == ["flywheel/state/crawl/site.sqlite"]
    root.get_file("state/crawl/site.sqlite", str(tmp_path / "back.sqlite"))
    assert (tmp_path / "back.sqlite").read_bytes() == b"sqlite bytes"


def _keep_all(table: pa.Table, cfg: None) -> StageOutput:
    return StageOutput(table, table.schema.empty_table(), {"seen": table.num_rows})


def test_stage_runner_writes_and_skips_on_s3(s3_root):
    root, _ = s3_root
    root.write_table("raw/run1/part-0000.parquet", _records(4))
    stage = Stage("keep", "1", _keep_all)
    report = run_stage(root, stage, None, ["raw/run1"])
    assert report["kept"] == 4 and not report["skipped"]
    assert root.read_bytes(f"{report['output']}/_SUCCESS").decode() == report["run_key"]
    again = run_stage(root, stage, None, ["raw/run1"])
    assert again["skipped"] and again["run_key"] == report["run_key"]


def test_publish_folder_claims_the_folder_conditionally(s3_root):
    root, _ = s3_root
    root.publish_folder("models/m1", {"model.pt": b"w", "metrics.json": b"{}"}, "metrics.json")
    assert root.taken_names("models") == ["m1"]
    # A publisher that checked for the marker before m1 was complete gets past that check; the claim stops it.
    root.fs.rm(root.path("models/m1/metrics.json"))
    with pytest.raises(FileExistsError, match="claimed by another publisher"):
        root.publish_folder("models/m1", {"metrics.json": b"late"}, "metrics.json")
    assert root.read_bytes("models/m1/model.pt") == b"w"


def test_two_concurrent_release_builds_on_s3_publish_one_version_once(s3_root, monkeypatch):
    import threading

    from test_releases import make_records

    from corpus.releases.build import ReleaseConfig, build_release
    from corpus.releases.versions import list_releases, load_release

    root, _ = s3_root
    real_publish = type(root).publish_folder
    # Both builders have listed the versions (none) and aim at v0001 before either publishes: the race
    # an object store without atomic rename has to settle.
    barrier = threading.Barrier(2, timeout=60)

    def publish_together(self, *args, **kwargs):
        barrier.wait()
        return real_publish(self, *args, **kwargs)

    monkeypatch.setattr(type(root), "publish_folder", publish_together)
    results: dict[int, object] = {}

    def build(i: int) -> None:
        try:
            results[i] = build_release(root, "race", make_records(20, seed=70 + i), ReleaseConfig(), signing_key="")
        except Exception as exc:  # the loser's error is the outcome under test
            results[i] = exc

    threads = [threading.Thread(target=build, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    monkeypatch.undo()
    won = [r for r in results.values() if isinstance(r, dict)]
    lost = [r for r in results.values() if not isinstance(r, dict)]
    assert len(won) == 1 and len(lost) == 1, results
    assert isinstance(lost[0], FileExistsError) and "race/v0001 already exists" in str(lost[0])
    assert list_releases(root, "race") == ["v0001"]
    assert load_release(root, "race", signing_key="").manifest == won[0]

"""The Parquet store writes atomically and the stage runner reports, keys and skips finished runs."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import BaseModel

from corpus.schema import RECORD_SCHEMA, RecordSchemaError, conform, make_record_id
from corpus.stages import (
    ShardSize,
    Stage,
    StageOutput,
    UndeclaredDropReason,
    plan_shards,
    run_stage,
    run_stage_sharded,
    split_by_reason,
    trace_reports,
)
from corpus.store import DataRoot


def _records(n: int) -> pa.Table:
    texts = [f"page {i}" for i in range(n)]
    return conform(
        pa.table(
            {
                "record_id": [make_record_id(t.encode()) for t in texts],
                "kind": ["text"] * n,
                "text": texts,
            }
        )
    )


class _MinLength(BaseModel):
    min_chars: int = 7


def _drop_short(table: pa.Table, cfg: _MinLength) -> StageOutput:
    reasons = [None if len(t) >= cfg.min_chars else "too_short" for t in table.column("text").to_pylist()]
    kept, dropped = split_by_reason(table, reasons)
    return StageOutput(kept, dropped, {"checked": table.num_rows})


DROP_SHORT = Stage("drop-short", "1", _drop_short, drop_reasons=frozenset({"too_short"}))


def test_conform_fills_missing_columns_and_rejects_unknown_ones():
    table = conform(pa.table({"record_id": ["a"], "kind": ["text"]}))
    assert table.schema.equals(RECORD_SCHEMA)
    assert table.column("label").to_pylist() == [None]
    with pytest.raises(ValueError, match="lable"):
        conform(pa.table({"record_id": ["a"], "kind": ["text"], "lable": ["cat"]}))


def test_record_id_is_stable_content_hash():
    assert make_record_id(b"abc") == make_record_id(b"abc")
    assert make_record_id(b"abc") != make_record_id(b"abd")
    assert len(make_record_id(b"abc")) == 32


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path):
    root = DataRoot(str(tmp_path))
    root.write_table("raw/run1/part-0000.parquet", _records(3))
    root.write_json("raw/run1/_report.json", {"pages": 3})
    assert sorted(p.name for p in (tmp_path / "raw/run1").iterdir()) == ["_report.json", "part-0000.parquet"]
    assert root.read_table("raw/run1").num_rows == 3
    assert root.read_json("raw/run1/_report.json") == {"pages": 3}


def test_split_by_reason_keeps_every_row_with_its_reason():
    table = _records(4)
    kept, dropped = split_by_reason(table, [None, "a", None, "b"])
    assert kept.num_rows == 2 and dropped.num_rows == 2
    assert dropped.column("drop_reason").to_pylist() == ["a", "b"]
    with pytest.raises(ValueError):
        split_by_reason(table, [None])


def test_run_stage_writes_outputs_report_and_skips_a_finished_run(tmp_path):
    root = DataRoot(str(tmp_path))
    texts = ["short", "long enough", "x"]
    table = conform(pa.table({"record_id": ["1", "2", "3"], "kind": ["text"] * 3, "text": texts}))
    root.write_table("raw/r/part-0000.parquet", table)

    first = run_stage(root, DROP_SHORT, _MinLength(), ["raw/r"])
    assert first["skipped"] is False
    assert first["kept"] == 1 and first["dropped"] == 2
    assert first["dropped_by_reason"] == {"too_short": 2}
    out = first["output"]
    assert root.exists(f"{out}/_SUCCESS")
    assert root.read_table(f"{out}/dropped").column("drop_reason").to_pylist() == ["too_short", "too_short"]

    again = run_stage(root, DROP_SHORT, _MinLength(), ["raw/r"])
    assert again["skipped"] is True and again["output"] == out

    other_config = run_stage(root, DROP_SHORT, _MinLength(min_chars=1), ["raw/r"])
    assert other_config["output"] != out and other_config["kept"] == 3


def test_run_stage_refuses_a_stage_that_loses_rows(tmp_path):
    root = DataRoot(str(tmp_path))
    root.write_table("raw/r/part-0000.parquet", _records(3))
    lossy = Stage("lossy", "1", lambda t, cfg: StageOutput(t.slice(0, 1), t.slice(0, 0), {}))
    with pytest.raises(RuntimeError, match="lost rows"):
        run_stage(root, lossy, None, ["raw/r"])
    assert not root.exists("curated") or not any(
        root.exists(f"curated/{d}/_SUCCESS") for d in root.list_dirs("curated")
    )


@pytest.mark.parametrize(
    ("declared", "shards"),
    [(frozenset(), 1), (frozenset({"too_long"}), 1), (frozenset({"too-short", "Too_short"}), 3)],
)
def test_run_stage_refuses_a_drop_reason_the_stage_did_not_declare(tmp_path, declared, shards):
    root = DataRoot(str(tmp_path))
    root.write_table("raw/r/part-0000.parquet", _records(3))
    undeclared = Stage("drop-short", "1", _drop_short, drop_reasons=declared)
    with pytest.raises(UndeclaredDropReason, match=r"stage drop-short .*'too_short'"):
        run_stage_sharded(root, undeclared, _MinLength(), ["raw/r"], shards=shards)
    assert not root.exists("curated")  # refused before any part was written


def test_declared_drop_reasons_pass_and_a_stage_that_drops_nothing_needs_none(tmp_path):
    root = DataRoot(str(tmp_path))
    root.write_table("raw/r/part-0000.parquet", _records(3))
    both = Stage("drop-short", "1", _drop_short, drop_reasons=frozenset({"too_short", "too_long"}))
    assert run_stage(root, both, _MinLength(), ["raw/r"])["dropped_by_reason"] == {"too_short": 3}
    keep_all = Stage("keep", "1", lambda t, cfg: StageOutput(t, t.slice(0, 0), {}))
    assert run_stage(root, keep_all, None, ["raw/r"])["kept"] == 3


def test_trace_reports_follows_a_pool_back_through_its_stages(tmp_path):
    root = DataRoot(str(tmp_path))
    texts = ["short", "long enough", "x"]
    root.write_table(
        "raw/r/part-0000.parquet",
        conform(pa.table({"record_id": ["1", "2", "3"], "kind": ["text"] * 3, "text": texts})),
    )
    first = run_stage(root, DROP_SHORT, _MinLength(), ["raw/r"])
    second = run_stage(root, DROP_SHORT, _MinLength(min_chars=20), [f"{first['output']}/kept"])
    chain = trace_reports(root, f"{second['output']}/kept")
    assert [r["run_key"] for r in chain] == [second["run_key"], first["run_key"]]
    assert [r["kept"] for r in chain] == [0, 1]


FILES = {"a.parquet": b"AAA", "b.txt": b"bee", "manifest.json": b"{}"}


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_publish_folder_on_a_local_root_is_whole_read_only_and_never_overwritten(tmp_path):
    root = DataRoot(str(tmp_path))
    root.publish_folder("releases/d/v0001", FILES, "manifest.json")
    folder = tmp_path / "releases" / "d" / "v0001"
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == FILES
    assert all((p.stat().st_mode & 0o222) == 0 for p in folder.iterdir())
    assert _names(folder.parent) == ["v0001"]
    with pytest.raises(FileExistsError, match="v0001 already exists"):
        root.publish_folder("releases/d/v0001", {"manifest.json": b"other"}, "manifest.json")
    assert (folder / "manifest.json").read_bytes() == b"{}" and _names(folder.parent) == ["v0001"]
    root.publish_folder("releases/d/v0002", {"m.json": b"1"}, "m.json", read_only=False)
    assert (tmp_path / "releases/d/v0002/m.json").stat().st_mode & 0o200


def test_publish_folder_loses_a_race_for_the_rename_with_file_exists_and_cleans_up(tmp_path, monkeypatch):
    import os

    root = DataRoot(str(tmp_path))
    real_rename = os.rename

    def rival_first(src, dst):
        # Planted race: another publisher renames its folder into place after our existence check.
        os.makedirs(dst)
        (tmp_path / "models" / "m1" / "metrics.json").write_bytes(b"rival")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rival_first)
    with pytest.raises(FileExistsError, match="already exists"):
        root.publish_folder("models/m1", {"metrics.json": b"mine"}, "metrics.json")
    monkeypatch.undo()
    assert _names(tmp_path / "models") == ["m1"]
    assert (tmp_path / "models" / "m1" / "metrics.json").read_bytes() == b"rival"


def test_publish_folder_refuses_bad_input_and_leaves_nothing_on_a_failed_write(tmp_path):
    root = DataRoot(str(tmp_path))
    with pytest.raises(ValueError, match="marker 'done' must be one of the files"):
        root.publish_folder("out/x", {"a": b"1"}, "done")
    with pytest.raises(ValueError, match="plain names"):
        root.publish_folder("out/x", {"sub/a": b"1", "done": b""}, "done")
    with pytest.raises(TypeError):
        root.publish_folder("out/x", {"a": "not bytes", "done": b""}, "done")
    assert not (tmp_path / "out").exists() or _names(tmp_path / "out") == []


def test_publish_folder_on_object_storage_writes_in_place_with_the_marker_last(monkeypatch):
    import uuid

    root = DataRoot(f"memory://publish-{uuid.uuid4().hex}")
    assert not root.is_local
    written: list[str] = []
    real_pipe = root.fs.pipe_file

    def spy(path, data, **kwargs):
        written.append(path.rsplit("/", 1)[-1])
        return real_pipe(path, data, **kwargs)

    monkeypatch.setattr(root.fs, "pipe_file", spy)
    files = {"manifest.json": b"{}", "a.parquet": b"AAA", "b.txt": b"bee"}
    root.publish_folder("releases/d/v0001", files, "manifest.json")
    # The claim (<parent>/.claims/<name>) first, the marker last.
    assert written == ["v0001", "a.parquet", "b.txt", "manifest.json"]
    assert root.exists("releases/d/.claims/v0001") and root.taken_names("releases/d") == ["v0001"]
    assert {n: root.read_bytes(f"releases/d/v0001/{n}") for n in files} == files
    assert root.list_dirs("releases/d") == [".claims", "v0001"]
    with pytest.raises(FileExistsError, match="v0001 already exists"):
        root.publish_folder("releases/d/v0001", {"manifest.json": b"other"}, "manifest.json")
    assert root.read_bytes("releases/d/v0001/manifest.json") == b"{}"


def _good_raw() -> pa.Table:
    return conform(pa.table({"record_id": ["1", "2"], "kind": ["text"] * 2, "text": ["long enough", "also long"]}))


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


_GOOD = {"record_id": ["3", "4"], "kind": ["text", "text"], "text": ["long enough", "also long"]}
# Planted bad raw files: (name, bytes, column the error must name or None for an unreadable file).
BAD_INPUTS = [
    ("truncated", _parquet_bytes(pa.table(_GOOD))[:-40], None),
    ("not_parquet", b"<html>rate limited</html>", None),
    ("empty_file", b"", None),
    ("missing_record_id", _parquet_bytes(pa.table({k: v for k, v in _GOOD.items() if k != "record_id"})), "record_id"),
    ("missing_kind", _parquet_bytes(pa.table({k: v for k, v in _GOOD.items() if k != "kind"})), "kind"),
    ("null_record_id", _parquet_bytes(pa.table({**_GOOD, "record_id": ["3", None]})), "record_id"),
    ("null_kind", _parquet_bytes(pa.table({**_GOOD, "kind": [None, "text"]})), "kind"),
    ("int_record_id", _parquet_bytes(pa.table({**_GOOD, "record_id": [3, 4]})), "record_id"),
    ("list_text", _parquet_bytes(pa.table({**_GOOD, "text": [["a"], ["b"]]})), "text"),
    ("string_fetched_at", _parquet_bytes(pa.table({**_GOOD, "fetched_at": ["2026-01-01", "x"]})), "fetched_at"),
    ("string_image", _parquet_bytes(pa.table({**_GOOD, "image": ["not", "bytes"]})), "image"),
    ("float_width", _parquet_bytes(pa.table({**_GOOD, "width": [1.5, 2.0]})), "width"),
    ("unknown_column", _parquet_bytes(pa.table({**_GOOD, "lable": ["cat", "dog"]})), "lable"),
]


@pytest.mark.parametrize(("name", "data", "column"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
@pytest.mark.parametrize("shards", [1, 2])
def test_a_bad_raw_file_is_refused_by_name_and_column_before_anything_is_written(tmp_path, name, data, column, shards):
    root = DataRoot(str(tmp_path))
    root.write_table("raw/r/part-0000.parquet", _good_raw())
    root.write_bytes("raw/r/part-0001.parquet", data)
    with pytest.raises(RecordSchemaError) as caught:
        run_stage_sharded(root, DROP_SHORT, _MinLength(), ["raw/r"], shards=shards)
    message = str(caught.value)
    assert "raw/r/part-0001.parquet" in message and "\n" not in message
    assert caught.value.source == "raw/r/part-0001.parquet" and caught.value.column == column
    if column:
        assert f"column {column!r}" in message
    assert not root.exists("curated")


def test_a_file_that_turns_bad_after_planning_leaves_no_partial_output(tmp_path, monkeypatch):
    root = DataRoot(str(tmp_path))
    for k in range(2):
        root.write_table(f"raw/r/part-000{k}.parquet", _good_raw())
    planned = plan_shards(root, ["raw/r"], 2)
    # The second file is overwritten after the footers were checked (a writer still at work, a bad disk).
    monkeypatch.setattr("corpus.stages.plan_shards", lambda *args: planned)
    root.write_bytes("raw/r/part-0001.parquet", b"garbage")
    with pytest.raises(RecordSchemaError, match="part-0001"):
        run_stage_sharded(root, DROP_SHORT, _MinLength(), ["raw/r"], shards=2)
    assert not root.exists("curated") or not root.list_dirs("curated")


def test_conform_names_the_column_it_cannot_cast():
    with pytest.raises(RecordSchemaError, match=r"x.parquet: column 'width'"):
        conform(pa.table({"record_id": ["a"], "kind": ["image"], "width": ["wide"]}), source="x.parquet")


def test_automatic_shards_are_sized_from_the_input_rows_and_bytes(tmp_path):
    root = DataRoot(str(tmp_path))
    for k in range(3):
        root.write_table(f"raw/r/part-000{k}.parquet", _records(40).slice(0, 40))
    by_rows = plan_shards(root, ["raw/r"], None, ShardSize(rows=25))
    assert len(by_rows) == 5 and all(s.rows == 24 for s in by_rows)  # 120 rows, at most 25 a shard
    assert [s.first_row for s in by_rows] == [0, 24, 48, 72, 96]
    data_bytes = sum(
        pq.ParquetFile(root.path(f)).metadata.row_group(0).total_byte_size for f in root.list("raw/r", ".parquet")
    )
    by_bytes = plan_shards(root, ["raw/r"], None, ShardSize(rows=10**6, bytes=data_bytes // 4 + 1))
    assert len(by_bytes) == 4
    assert len(plan_shards(root, ["raw/r"], None)) == 1  # the defaults: 2,000 rows, 128 MiB
    report = run_stage_sharded(root, DROP_SHORT, _MinLength(), ["raw/r"], size=ShardSize(rows=25))
    assert report["shards"] == 5 and report["rows_in"] == 120
    assert len(root.list(f"{report['output']}/kept", ".parquet")) == 5

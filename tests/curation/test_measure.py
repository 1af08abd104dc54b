"""Measuring finds each row's defects and fills its columns; the rounds give the same rows in memory and in files."""

from __future__ import annotations

import pyarrow as pa
import pytest
from curation_records import by_url

from corpus.schema import RecordSchemaError
from corpus.stages import Stage, plan_shards
from corpus.store import DataRoot
from curation.curate import CURATE, curate, run_curate
from curation.curate_config import DROP_REASONS, CurateConfig
from curation.measure import FEATURE_SCHEMA, Measuring, measure_images, measure_pages, measure_records
from curation.rounds import run_rounds
from curation.scratch import FileScratch, MemoryScratch, pack_keys, unpack_keys
from curation.scrub import DROP_REASONS as SCRUB_DROP_REASONS
from curation.scrub import SCRUB
from curation.search import split_partitions

U = "http://127.0.0.1/img/"
P = "http://127.0.0.1/"


def reasons(features: pa.Table) -> dict[str, str | None]:
    return by_url(features, "reason")


def test_measure_records_finds_each_row_level_defect_and_fills_the_columns(raw_table):
    features = measure_records(raw_table, CurateConfig(), first_row=100)
    assert features.schema.equals(FEATURE_SCHEMA)
    assert features.column("g").to_pylist() == list(range(100, 100 + raw_table.num_rows))
    found = {u: r for u, r in reasons(features).items() if r is not None}
    # Duplicates inside the run are the search's business, not measuring's.
    assert found == {
        U + "truncated.jpg": "truncated",
        U + "junk.png": "undecodable",
        U + "tiny.png": "too_small",
        P + "empty": "empty_text",
        P + "null": "empty_text",
    }
    width = by_url(features, "width")
    assert width[U + "a.png"] == 256 and width[U + "near_a.jpg"] == 128 and width[P + "p1"] is None
    urls, signed = features.column("url").to_pylist(), features.column("signature").is_valid().to_pylist()
    signed = dict(zip(urls, signed, strict=True))
    assert signed[U + "a.png"] and not signed[U + "tiny.png"] and not signed[P + "p1"]
    assert by_url(features, "bands")[P + "p1"] is not None and by_url(features, "lang")[P + "p1"] == "en"


def test_measure_images_and_pages_fill_only_their_own_rows(raw_table):
    m = Measuring.start(raw_table)
    measure_images(m, CurateConfig())
    kinds = raw_table.column("kind").to_pylist()
    assert all(m.values["content_hash"][i] is None for i, k in enumerate(kinds) if k == "text")
    assert all(m.values["reason"][i] is None for i, k in enumerate(kinds) if k == "text")
    measure_pages(m, CurateConfig())
    pages = [i for i, k in enumerate(kinds) if k == "text" and m.values["reason"][i] is None]
    assert pages and all(m.values["content_hash"][i] and i in m.bands for i in pages)
    assert set(m.bands) == set(pages)


def test_rows_unknown_kind_are_dropped_as_such(raw_table):
    odd = raw_table.slice(0, 2).set_column(1, "kind", pa.array(["video", "image"]))
    features = measure_records(odd, CurateConfig())
    assert features.column("reason").to_pylist()[0] == "unknown_kind"


def test_keys_survive_packing(raw_table):
    features = measure_records(raw_table, CurateConfig())
    for part in split_partitions(features, CurateConfig(), 3, with_known=True):
        unpacked = unpack_keys(pack_keys(part))
        for role, table in part.items():
            assert unpacked[role].to_pylist() == table.to_pylist()


@pytest.mark.parametrize("partitions", [1, 3])
def test_the_rounds_give_the_same_rows_in_memory_and_in_files(tmp_path, raw_table, partitions):
    root = DataRoot(str(tmp_path))
    root.write_table("raw/r/part-0000.parquet", raw_table)
    memory = MemoryScratch(raw_table)
    in_memory = run_rounds(memory, memory.shards(), CurateConfig(), partitions)
    files = FileScratch(root, "curated/x/_work", "curated/x")
    in_files = run_rounds(files, plan_shards(root, ["raw/r"], 1), CurateConfig(), partitions)
    assert (in_memory.dropped_by_reason, in_memory.kept_by_kind, in_memory.known) == (
        in_files.dropped_by_reason,
        in_files.kept_by_kind,
        in_files.known,
    )
    kept, dropped = memory.output()
    assert root.read_table("curated/x/kept").equals(kept) and root.read_table("curated/x/dropped").equals(dropped)
    files.clear()
    assert not root.exists("curated/x/_work")


def test_curate_and_scrub_declare_their_drop_reasons(tmp_path, raw_table):
    assert CURATE.drop_reasons == frozenset(DROP_REASONS) and SCRUB.drop_reasons == frozenset(SCRUB_DROP_REASONS)
    root = DataRoot(str(tmp_path))
    root.write_table("raw/r/part-0000.parquet", raw_table)
    report = run_curate(root, CurateConfig(), ["raw/r"], index_path=None)
    assert set(report["dropped_by_reason"]) <= CURATE.drop_reasons and report["dropped"] == 8


def test_run_curate_refuses_a_reason_its_stage_does_not_declare(tmp_path, raw_table, monkeypatch):
    narrow = Stage("curate", "3", curate, drop_reasons=CURATE.drop_reasons - {"truncated"})
    monkeypatch.setattr("curation.curate.CURATE", narrow)
    root = DataRoot(str(tmp_path))
    root.write_table("raw/r/part-0000.parquet", raw_table)
    with pytest.raises(ValueError, match=r"stage curate .*\['truncated'\]"):
        run_curate(root, CurateConfig(), ["raw/r"], index_path=None)
    assert not [d for d in root.list_dirs("curated") if root.exists(f"curated/{d}/_SUCCESS")]


@pytest.mark.parametrize(
    ("column", "values"), [("record_id", pa.array([1] * 13)), ("text", pa.array([["a"]] * 13)), (None, None)]
)
def test_run_curate_refuses_bad_raw_input_before_writing(tmp_path, raw_table, column, values):
    root = DataRoot(str(tmp_path))
    root.write_table("raw/r/part-0000.parquet", raw_table)
    if column is None:
        root.write_bytes("raw/r/part-0001.parquet", b"PAR1 cut off")
    else:
        root.write_table(
            "raw/r/part-0001.parquet", raw_table.set_column(raw_table.schema.get_field_index(column), column, values)
        )
    with pytest.raises(RecordSchemaError, match=r"raw/r/part-0001\.parquet") as caught:
        run_curate(root, CurateConfig(), ["raw/r"], shards=2)
    assert caught.value.column == column
    assert not root.exists("curated") and not root.exists("index")

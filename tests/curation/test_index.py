"""The dedup index: a later crawl is deduplicated against everything kept before; a rerun changes nothing."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa
import pytest
from curation_records import T0, build_table, by_url, image_row, text_row
from test_text_dedup import article, edit

from corpus.store import DataRoot
from curation.curate import curate, run_curate
from curation.curate_config import CurateConfig
from curation.index import INDEX_PATH, compute_fetch_keys, empty_index, load_index, save_index, update_index

P = "http://127.0.0.1/"
U = "http://127.0.0.1/img/"


@pytest.fixture
def first_crawl(raw_images) -> pa.Table:
    return build_table(
        [
            text_row(article(1), P + "a", 0),
            text_row(article(2), P + "b", 1),
            image_row(raw_images["a"], U + "a.png", 2),
            image_row(raw_images["b"], U + "b.png", 3),
        ]
    )


@pytest.fixture
def second_crawl(raw_images) -> pa.Table:
    """A later crawl: near and exact copies of what the first kept, plus one new page and one new image."""
    return build_table(
        [
            text_row(edit(article(1), 7, 2), P + "a-again", 60),
            text_row(article(2), P + "b-mirror", 61),
            text_row(article(3), P + "c", 62),
            image_row(raw_images["near_a"], U + "a-small.jpg", 63),
            image_row(raw_images["b"], U + "b-again.png", 64),
            image_row(raw_images["c"], U + "c.jpg", 65),
        ]
    )


def test_a_later_crawl_is_deduplicated_against_the_index(first_crawl, second_crawl):
    first = curate(first_crawl, CurateConfig(), index=empty_index())
    index = update_index(empty_index(), first.kept)
    assert index.num_rows == 4 and set(index.table.column("kind").to_pylist()) == {"text", "image"}

    out = curate(second_crawl, CurateConfig(), index=index)
    assert by_url(out.dropped, "drop_reason") == {
        P + "a-again": "near_duplicate_page",
        P + "b-mirror": "duplicate_page",
        U + "a-small.jpg": "near_duplicate",
        U + "b-again.png": "exact_duplicate",
    }
    earlier = by_url(first.kept, "record_id")
    clusters = by_url(out.dropped, "near_dup_cluster")
    assert clusters[P + "a-again"] == earlier[P + "a"] and clusters[P + "b-mirror"] == earlier[P + "b"]
    assert clusters[U + "a-small.jpg"] == earlier[U + "a.png"] and clusters[U + "b-again.png"] == earlier[U + "b.png"]
    assert sorted(out.kept.column("url").to_pylist()) == [P + "c", U + "c.jpg"]
    assert out.counters["known_duplicates"] == 4
    assert update_index(index, out.kept).num_rows == 6


def test_rerunning_the_same_input_against_its_own_index_changes_nothing(first_crawl):
    first = curate(first_crawl, CurateConfig())
    index = update_index(empty_index(), first.kept)
    again = curate(first_crawl, CurateConfig(), index=index)
    assert again.kept.equals(first.kept) and again.dropped.num_rows == 0
    assert update_index(index, again.kept).table.equals(index.table)


def test_same_bytes_fetched_again_later_is_a_new_fetch_not_the_same_row(first_crawl):
    keys = compute_fetch_keys(first_crawl)
    later = first_crawl.set_column(
        first_crawl.schema.get_field_index("fetched_at"),
        "fetched_at",
        pa.array([T0 + timedelta(days=7)] * first_crawl.num_rows, first_crawl.schema.field("fetched_at").type),
    )
    assert not set(keys) & set(compute_fetch_keys(later))
    index = update_index(empty_index(), curate(first_crawl).kept)
    assert curate(later, index=index).kept.num_rows == 0


def test_index_round_trips_through_the_data_root_and_refuses_other_parameters(tmp_path, first_crawl):
    root = DataRoot(str(tmp_path / "data"))
    assert load_index(root).num_rows == 0
    index = update_index(empty_index(), curate(first_crawl).kept)
    save_index(root, index)
    assert load_index(root).table.equals(index.table)
    assert not [p for p in root.list("index/dedup") if ".tmp-" in p]  # written atomically
    stale = index.table.replace_schema_metadata({b"flywheel.dedup_index": b'{"bands": 20}'})
    root.write_table(INDEX_PATH, stale)
    with pytest.raises(ValueError, match="rebuild"):
        load_index(root)
    with pytest.raises(ValueError, match="content_hash"):
        update_index(empty_index(), first_crawl)


def test_run_curate_writes_outputs_and_grows_the_index(tmp_path, first_crawl, second_crawl):
    root = DataRoot(str(tmp_path / "data"))
    root.write_table("raw/one/part-0000.parquet", first_crawl)
    root.write_table("raw/two/part-0000.parquet", second_crawl)
    one = run_curate(root, CurateConfig(), ["raw/one"])
    assert (one["kept"], one["dropped"], one["index_rows"]) == (4, 0, 4)
    two = run_curate(root, CurateConfig(), ["raw/two"])
    assert (two["kept"], two["dropped"], two["index_rows"]) == (2, 4, 6)
    assert two["dropped_by_reason"] == {
        "duplicate_page": 1,
        "exact_duplicate": 1,
        "near_duplicate": 1,
        "near_duplicate_page": 1,
    }
    before = load_index(root).table
    again = run_curate(root, CurateConfig(), ["raw/two"])
    assert (again["kept"], again["dropped"], again["index_rows"]) == (2, 4, 6)
    assert load_index(root).table.equals(before)


def test_a_run_killed_before_its_index_update_finishes_it_on_rerun(tmp_path, first_crawl, monkeypatch):
    root = DataRoot(str(tmp_path / "data"))
    root.write_table("raw/one/part-0000.parquet", first_crawl)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed between output and index update")

    monkeypatch.setattr("curation.curate.save_index", killed)
    with pytest.raises(KeyboardInterrupt):
        run_curate(root, CurateConfig(), ["raw/one"])
    assert load_index(root).num_rows == 0 and len(root.list_dirs("curated")) == 1
    monkeypatch.undo()

    rerun = run_curate(root, CurateConfig(), ["raw/one"])
    assert rerun["skipped"] is True and rerun["index_rows"] == 4 and load_index(root).num_rows == 4
    assert len(root.list_dirs("curated")) == 1  # the first output finished, no second one
    clean = DataRoot(str(tmp_path / "clean"))
    clean.write_table("raw/one/part-0000.parquet", first_crawl)
    run_curate(clean, CurateConfig(), ["raw/one"])
    assert load_index(root).table.equals(load_index(clean).table)


@pytest.mark.parametrize("shards", [1, 3])
def test_a_rerun_after_the_index_update_reuses_the_output_instead_of_orphaning_it(
    tmp_path, first_crawl, second_crawl, shards
):
    root = DataRoot(str(tmp_path / "data"))
    root.write_table("raw/one/part-0000.parquet", first_crawl)
    root.write_table("raw/two/part-0000.parquet", second_crawl)
    run_curate(root, CurateConfig(), ["raw/one"])
    two = run_curate(root, CurateConfig(), ["raw/two"], shards=shards)
    # Killed after the index was saved, before anyone used the report: the rerun sees a grown index.
    again = run_curate(root, CurateConfig(), ["raw/two"], shards=shards)
    assert again["skipped"] is True and again["output"] == two["output"] and again["index_rows"] == 6
    assert len(root.list_dirs("curated")) == 2
    assert load_index(root).commit["output"] == two["output"]
    # Once a later crawl has grown the index, rerunning an older one is a new run under the new index.
    later = run_curate(root, CurateConfig(), ["raw/one"])
    assert later["skipped"] is False and later["output"] != two["output"] and later["kept"] == 4


def test_a_run_with_nothing_new_keeps_the_index_and_its_commit(tmp_path, first_crawl):
    root = DataRoot(str(tmp_path / "data"))
    root.write_table("raw/one/part-0000.parquet", first_crawl)
    first = run_curate(root, CurateConfig(), ["raw/one"])
    stamp = root.fs.info(root.path(INDEX_PATH))["mtime"]
    assert run_curate(root, CurateConfig(), ["raw/one"])["output"] == first["output"]
    assert root.fs.info(root.path(INDEX_PATH))["mtime"] == stamp

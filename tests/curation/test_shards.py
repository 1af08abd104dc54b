"""Sharded curation gives the rows one process gives: same kept ids, clusters and reasons, any cut."""

from __future__ import annotations

import pickle
from datetime import timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from curation_records import build_table, by_url, planted_pairs_table, text_row

from bench.planted import generate_corpus
from corpus.stages import map_in_process, plan_shards, run_stage, run_stage_sharded
from corpus.store import DataRoot
from curation.curate import curate, run_curate
from curation.curate_config import CurateConfig
from curation.dedup import find_pairs_within
from curation.index import INDEX_PATH, DedupIndex, load_index
from curation.known import compute_known_keys, known_rows
from curation.partitions import Settlement, find_image_links, image_buckets
from curation.scrub import SCRUB, ScrubConfig


def outcome(table: pa.Table) -> list[tuple]:
    """Every row's identity and decision, in output order."""
    columns = ["record_id", "url", "near_dup_cluster", "content_hash", "phash", "width", "lang"]
    if "drop_reason" in table.column_names:
        columns.append("drop_reason")
    return list(zip(*(table.column(c).to_pylist() for c in columns), strict=True))


def write_inputs(root: DataRoot, table: pa.Table, run: str, files: int) -> str:
    bounds = np.linspace(0, table.num_rows, files + 1).astype(int)
    for k in range(files):
        root.write_table(f"raw/{run}/part-{k:04d}.parquet", table.slice(bounds[k], bounds[k + 1] - bounds[k]))
    return f"raw/{run}"


@pytest.fixture(scope="module")
def corpus():
    return generate_corpus(images=120, pages=120, seed=3, duplicate_rate=0.2)


def test_pairs_always_meet_in_a_prefix_bucket():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, 300, dtype=np.uint64)
    flips = rng.integers(0, 64, (300, 8))
    near = base ^ np.bitwise_or.reduce(np.uint64(1) << flips.astype(np.uint64), axis=1)
    hashes = np.concatenate([base, near])
    g = np.arange(hashes.size)
    resident, query = image_buckets(hashes, 10)
    found = set()
    for bucket in range(256):
        res, qry = (resident == bucket).any(axis=1), (query == bucket).any(axis=1)
        found |= set(map(tuple, find_image_links(g[qry], hashes[qry], g[res], hashes[res], 10).tolist()))
    assert found == set(map(tuple, find_pairs_within(hashes, 10).tolist()))
    assert len(found) >= 300  # every planted pair (8 flipped bits or fewer) is among them


def test_partitions_do_not_change_curate(corpus):
    one = curate(corpus.table)
    for partitions in (2, 7):
        many = curate(corpus.table, partitions=partitions)
        assert outcome(many.kept) == outcome(one.kept)
        assert outcome(many.dropped) == outcome(one.dropped)
        assert many.counters == one.counters


def test_sharded_run_matches_one_process_and_finds_the_planted_copies(tmp_path, corpus):
    single, sharded = DataRoot(str(tmp_path / "single")), DataRoot(str(tmp_path / "sharded"))
    inputs = [write_inputs(single, corpus.table, "crawl-1", 3)]
    write_inputs(sharded, corpus.table, "crawl-1", 3)

    expected = run_curate(single, CurateConfig(), inputs)  # one shard, one partition
    report = run_curate(sharded, CurateConfig(), inputs, shards=4, partitions=3)

    assert report["output"] == expected["output"]  # same run key: same inputs, config and index
    assert (report["shards"], report["partitions"], expected["shards"]) == (4, 3, 1)
    in_memory = curate(corpus.table)
    assert outcome(single.read_table(f"{expected['output']}/kept")) == outcome(in_memory.kept)
    assert outcome(single.read_table(f"{expected['output']}/dropped")) == outcome(in_memory.dropped)
    assert expected["counters"] == in_memory.counters
    for part in ("kept", "dropped"):
        assert outcome(sharded.read_table(f"{report['output']}/{part}")) == outcome(
            single.read_table(f"{expected['output']}/{part}")
        )
    assert report["counters"] == expected["counters"]
    assert report["dropped_by_reason"] == expected["dropped_by_reason"]
    assert load_index(sharded).table.equals(load_index(single).table)
    assert not sharded.exists(f"{report['output']}/_work")

    dropped = sharded.read_table(f"{report['output']}/dropped")
    kept = sharded.read_table(f"{report['output']}/kept")
    reason = dict(zip(dropped.column("url").to_pylist(), dropped.column("drop_reason").to_pylist(), strict=True))
    cluster = dict(
        zip(
            kept.column("url").to_pylist() + dropped.column("url").to_pylist(),
            kept.column("near_dup_cluster").to_pylist() + dropped.column("near_dup_cluster").to_pylist(),
            strict=True,
        )
    )
    record = dict(zip(kept.column("url").to_pylist(), kept.column("record_id").to_pylist(), strict=True))
    for url, (defect, original) in corpus.planted.items():
        assert reason.get(url) == defect, url
        if original is not None and defect != "near_duplicate_page":
            assert cluster[url] == cluster[original] and cluster[original] in record.values()
    missed_pages = [u for u, (d, _) in corpus.planted.items() if d == "near_duplicate_page" and u not in reason]
    assert not missed_pages


def test_gathering_links_a_piece_at_a_time_changes_nothing(tmp_path, corpus, monkeypatch):
    whole, pieces = DataRoot(str(tmp_path / "whole")), DataRoot(str(tmp_path / "pieces"))
    inputs = [write_inputs(whole, corpus.table, "crawl-1", 3)]
    write_inputs(pieces, corpus.table, "crawl-1", 3)
    expected = run_curate(whole, CurateConfig(), inputs, shards=4)
    monkeypatch.setattr("curation.rounds.GATHER_LINKS", 1)  # every link's other end read on its own
    report = run_curate(pieces, CurateConfig(), inputs, shards=4)
    assert report["counters"]["near_duplicates"] > 0  # there were links to gather
    for part in ("kept", "dropped"):
        assert outcome(pieces.read_table(f"{report['output']}/{part}")) == outcome(
            whole.read_table(f"{expected['output']}/{part}")
        )


def test_sharded_run_with_verified_page_candidates_matches_one_process(tmp_path, corpus, monkeypatch):
    texts, near, far = planted_pairs_table()
    pages = build_table([text_row(t, f"http://127.0.0.1/pair-{k}", 10_000 + k) for k, t in enumerate(texts)])
    # Interleaved, so the pairs' ends and their candidate links fall in different shards and partitions.
    table = pa.concat_tables([corpus.table, pages]).take(
        np.random.default_rng(1).permutation(corpus.table.num_rows + 70)
    )
    cfg = CurateConfig(text_near_dup_verify=True)
    single, sharded = DataRoot(str(tmp_path / "single")), DataRoot(str(tmp_path / "sharded"))
    inputs = [write_inputs(single, table, "crawl-1", 3)]
    write_inputs(sharded, table, "crawl-1", 3)

    expected = run_curate(single, cfg, inputs)
    report = run_curate(sharded, cfg, inputs, shards=4, partitions=3)
    in_memory = curate(table, cfg)
    for part in ("kept", "dropped"):
        one = outcome(single.read_table(f"{expected['output']}/{part}"))
        assert outcome(sharded.read_table(f"{report['output']}/{part}")) == one == outcome(getattr(in_memory, part))
    assert report["counters"] == expected["counters"] == in_memory.counters
    # Page and image links checked one link at a time: the same outcome.
    monkeypatch.setattr("curation.rounds.GATHER_LINKS", 1)
    pieces = DataRoot(str(tmp_path / "pieces"))
    write_inputs(pieces, table, "crawl-1", 3)
    one_by_one = run_curate(pieces, cfg, inputs, shards=4, partitions=3)
    for part in ("kept", "dropped"):
        assert outcome(pieces.read_table(f"{one_by_one['output']}/{part}")) == outcome(getattr(in_memory, part))
    reasons = by_url(in_memory.dropped, "drop_reason")
    assert all(reasons.get(f"http://127.0.0.1/pair-{k}") == "near_duplicate_page" for k in near)
    assert not any(f"http://127.0.0.1/pair-{k}" in reasons for k in far)
    # The default banding, unchecked, merges some of these far copies (14 x 8 links Jaccard 0.5 with p = 0.03).
    default = by_url(curate(table).dropped, "drop_reason")
    assert any(f"http://127.0.0.1/pair-{k}" in default for k in far)


def test_second_crawl_against_the_index_matches_too(tmp_path, corpus):
    later = generate_corpus(images=60, pages=60, seed=4, duplicate_rate=0.0).table
    again = corpus.table.slice(0, 40)  # refetched a day later: same content at the same urls
    later_at = pc.add(again.column("fetched_at"), pa.scalar(timedelta(days=1)))
    again = again.set_column(again.schema.get_field_index("fetched_at"), again.schema.field("fetched_at"), later_at)
    second = pa.concat_tables([later, again])
    roots = [DataRoot(str(tmp_path / name)) for name in ("single", "sharded")]
    for root in roots:
        write_inputs(root, corpus.table, "crawl-1", 2)
        write_inputs(root, second, "crawl-2", 2)
    run_curate(roots[0], None, ["raw/crawl-1"])
    run_curate(roots[1], None, ["raw/crawl-1"], shards=3)
    expected = run_curate(roots[0], None, ["raw/crawl-2"])
    report = run_curate(roots[1], None, ["raw/crawl-2"], shards=3, partitions=2)
    assert report["output"] == expected["output"]
    assert report["counters"]["known_duplicates"] == expected["counters"]["known_duplicates"] > 0
    for part in ("kept", "dropped"):
        assert outcome(roots[1].read_table(f"{report['output']}/{part}")) == outcome(
            roots[0].read_table(f"{expected['output']}/{part}")
        )
    assert load_index(roots[1], INDEX_PATH).table.equals(load_index(roots[0], INDEX_PATH).table)


def test_a_finished_run_is_skipped_and_a_crashed_one_starts_clean(tmp_path, corpus):
    root = DataRoot(str(tmp_path / "data"))
    inputs = [write_inputs(root, corpus.table, "crawl-1", 2)]
    first = run_curate(root, None, inputs, shards=2, index_path=None)
    assert run_curate(root, None, inputs, shards=3, index_path=None)["skipped"] is True
    root.fs.rm(root.path(f"{first['output']}/_SUCCESS"))
    root.write_bytes(f"{first['output']}/_work/features/shard-00009.parquet", b"left by a crash")
    rerun = run_curate(root, None, inputs, shards=3, index_path=None)
    assert rerun["skipped"] is False and rerun["kept"] == first["kept"]
    assert len(root.list(f"{rerun['output']}/kept", ".parquet")) == 3


def test_shards_cover_every_row_once(tmp_path, corpus):
    root = DataRoot(str(tmp_path / "data"))
    inputs = [write_inputs(root, corpus.table, "crawl-1", 3)]
    for shards in (1, 2, 5, 1000):
        planned = plan_shards(root, inputs, shards)
        assert [s.first_row for s in planned] == list(np.cumsum([0] + [s.rows for s in planned[:-1]]))
        assert sum(s.rows for s in planned) == corpus.table.num_rows
        assert len(planned) == min(shards, corpus.table.num_rows)
    with pytest.raises(ValueError, match="shards"):
        plan_shards(root, inputs, 0)


def test_row_wise_stage_in_shards_matches_run_stage(tmp_path, raw_table):
    roots = [DataRoot(str(tmp_path / name)) for name in ("single", "sharded")]
    for root in roots:
        root.write_table("raw/run1/part-0000.parquet", raw_table)
    expected = run_stage(roots[0], SCRUB, ScrubConfig(), ["raw/run1"])
    report = run_stage_sharded(roots[1], SCRUB, ScrubConfig(), ["raw/run1"], shards=4)
    assert report["output"] == expected["output"] and report["shards"] == 4
    assert report["counters"] == expected["counters"]
    assert report["dropped_by_reason"] == expected["dropped_by_reason"]
    for part in ("kept", "dropped"):
        assert (
            roots[1]
            .read_table(f"{report['output']}/{part}")
            .equals(roots[0].read_table(f"{expected['output']}/{part}"))
        )
    assert run_stage_sharded(roots[1], SCRUB, ScrubConfig(), ["raw/run1"], shards=2)["skipped"] is True


@pytest.mark.s3
def test_sharded_run_on_an_s3_root_matches_local_disk(tmp_path, corpus, moto_s3):
    roots = [DataRoot(str(tmp_path / "local")), moto_s3.open_root("shards")[0]]
    for root in roots:
        write_inputs(root, corpus.table, "crawl-1", 2)
    local, remote = (run_curate(root, None, ["raw/crawl-1"], shards=3) for root in roots)
    assert remote["output"] == local["output"] and remote["counters"] == local["counters"]
    for part in ("kept", "dropped"):
        assert outcome(roots[1].read_table(f"{remote['output']}/{part}")) == outcome(
            roots[0].read_table(f"{local['output']}/{part}")
        )
    assert not roots[1].exists(f"{remote['output']}/_work")
    assert load_index(roots[1]).table.equals(load_index(roots[0]).table)


def test_pieces_are_sent_names_and_their_own_rows_not_the_index_or_the_settlement(tmp_path, corpus):
    # Same second crawl on two roots: one with an index of the first crawl's kept rows, one with none.
    second = pa.concat_tables([generate_corpus(images=30, pages=30, seed=8).table, corpus.table.slice(0, 60)])
    roots = {name: DataRoot(str(tmp_path / name)) for name in ("known", "fresh")}
    write_inputs(roots["known"], corpus.table, "crawl-1", 2)
    run_curate(roots["known"], None, ["raw/crawl-1"], shards=2)
    index_bytes = len(pickle.dumps(compute_known_keys(known_rows(None, load_index(roots["known"])))))
    sent: dict[str, dict[str, list[int]]] = {}
    for name, root in roots.items():
        write_inputs(root, second, "crawl-2", 2)

        def recording(step, args, name=name):
            for piece in args:
                assert not any(isinstance(a, pa.Table | DedupIndex | Settlement) for a in piece), step.__name__
            sent.setdefault(name, {}).setdefault(step.__name__, []).extend(len(pickle.dumps(a)) for a in args)
            return map_in_process(step, args)

        report = run_curate(root, None, ["raw/crawl-2"], shards=3, partitions=2, map_steps=recording)
        assert (report["counters"]["known_duplicates"] > 0) is (name == "known")
    assert index_bytes > 20_000  # the index's keys: what a task would hold if it read them whole
    # A known-round piece is sent the partition's name; it reads its own slice (tests/curation/test_known.py).
    assert len(sent["known"]["match_known_partition"]) == 2 and "match_known_partition" not in sent["fresh"]
    assert max(sent["known"]["match_known_partition"]) < 2_000
    for step in ("measure_shard", "write_shard"):  # a path and a digest more, the same with any index
        assert all(abs(k - f) <= 100 for k, f in zip(sent["known"][step], sent["fresh"][step], strict=True)), step
    assert max(sent["known"]["write_shard"]) < 2_000  # a shard's settled rows are read from the scratch space

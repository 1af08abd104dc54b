"""The curate stage finds each planted defect with its reason and keeps distinct content apart."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow.compute as pc
import pytest
from curation_records import build_table, by_url, encode, image_row, smooth_image
from PIL import Image

from corpus.schema import empty
from curation.curate import CURATE, curate
from curation.curate_config import DROP_REASONS, CurateConfig
from curation.images import ImageDecodeError, compute_phash, decode_image

U = "http://127.0.0.1/img/"
P = "http://127.0.0.1/"


def test_curate_drops_each_planted_defect_with_its_reason(raw_table):
    out = curate(raw_table, CurateConfig())

    assert out.kept.num_rows + out.dropped.num_rows == raw_table.num_rows
    assert by_url(out.dropped, "drop_reason") == {
        U + "near_a.jpg": "near_duplicate",
        U + "b_copy.png": "exact_duplicate",
        U + "truncated.jpg": "truncated",
        U + "junk.png": "undecodable",
        U + "tiny.png": "too_small",
        P + "p1-copy": "duplicate_page",
        P + "empty": "empty_text",
        P + "null": "empty_text",
    }
    assert set(out.kept.column("url").to_pylist()) == {U + "a.png", U + "b.png", U + "c.jpg", P + "p1", P + "p2"}
    assert set(out.dropped.column("drop_reason").to_pylist()) <= set(DROP_REASONS)
    assert out.counters == {
        "exact_duplicates": 1,
        "near_duplicates": 1,
        "duplicate_pages": 1,
        "near_duplicate_pages": 0,
        "empty_text": 2,
        "undecodable": 1,
        "truncated": 1,
        "too_large": 0,
        "too_small": 1,
        "extreme_aspect_ratio": 0,
        "low_information": 0,
        "low_quality_pages": 0,
        "unknown_kind": 0,
        "known_duplicates": 0,
        "images_kept": 3,
        "pages_kept": 2,
    }


def test_near_dup_clusters_point_at_the_largest_image_and_distinct_images_stay_apart(raw_table):
    out = curate(raw_table, CurateConfig())
    both = {**by_url(out.kept, "near_dup_cluster"), **by_url(out.dropped, "near_dup_cluster")}
    ids = {**by_url(out.kept, "record_id"), **by_url(out.dropped, "record_id")}

    # The half-size copy was fetched first, but the full-size original represents the cluster.
    assert both[U + "near_a.jpg"] == ids[U + "a.png"]
    assert both[U + "a.png"] == ids[U + "a.png"]
    assert both[U + "b_copy.png"] == ids[U + "b.png"]
    assert both[U + "b.png"] == ids[U + "b.png"]
    assert both[U + "c.jpg"] == ids[U + "c.jpg"]
    assert both[U + "tiny.png"] == ids[U + "tiny.png"]
    assert both[U + "truncated.jpg"] is None
    assert len({both[U + "a.png"], both[U + "b.png"], both[U + "c.jpg"]}) == 3


def test_curate_fills_measurements_and_content_hashes(raw_table, raw_images):
    out = curate(raw_table, CurateConfig())
    width, height, mime = by_url(out.kept, "width"), by_url(out.kept, "height"), by_url(out.kept, "mime")
    assert (width[U + "a.png"], height[U + "a.png"], mime[U + "a.png"]) == (256, 192, "image/png")
    assert mime[U + "c.jpg"] == "image/jpeg"
    hashes = by_url(out.kept, "content_hash")
    assert hashes[U + "a.png"] == hashlib.sha256(raw_images["a"]).hexdigest()
    assert hashes[P + "p1"] == hashlib.sha256(b"cats are great. they sleep a lot.").hexdigest()
    assert all(p is not None for p in out.kept.filter(pc.equal(out.kept["kind"], "image")).column("phash").to_pylist())
    # The input table is not modified: its measurement columns are still null.
    assert raw_table.column("width").null_count == raw_table.num_rows


def test_first_copy_in_fetch_order_is_kept_regardless_of_row_order(raw_images):
    rows = [
        image_row(raw_images["b"], U + "later.png", 9),
        image_row(raw_images["b"], U + "earlier.png", 1),
    ]
    out = curate(build_table(rows), CurateConfig())
    assert out.kept.column("url").to_pylist() == [U + "earlier.png"]
    assert by_url(out.dropped, "drop_reason") == {U + "later.png": "exact_duplicate"}


def test_images_over_the_pixel_limit_are_dropped_as_too_large(raw_images):
    out = curate(build_table([image_row(raw_images["a"], U + "a.png", 0)]), CurateConfig(max_pixels=256 * 192 - 1))
    assert by_url(out.dropped, "drop_reason") == {U + "a.png": "too_large"}
    assert out.counters["too_large"] == 1


def test_decode_image_names_the_reason():
    with pytest.raises(ImageDecodeError, match="undecodable"):
        decode_image(b"GIF89a broken")
    with pytest.raises(ImageDecodeError, match="too_large"):
        decode_image(encode(smooth_image(7, (100, 100))), max_pixels=9_999)
    assert decode_image(encode(smooth_image(7, (100, 100))), max_pixels=10_000).size == (100, 100)


def test_unknown_columns_are_refused_not_dropped(raw_table):
    with pytest.raises(ValueError, match="not in the record schema"):
        curate(raw_table.append_column("surprise", raw_table.column("url")), CurateConfig())


def test_stage_is_named_and_versioned():
    assert (CURATE.name, CURATE.version, CURATE.apply) == ("curate", "3", curate)


def test_empty_input_gives_empty_outputs():
    out = curate(empty(), CurateConfig())
    assert (out.kept.num_rows, out.dropped.num_rows, out.counters["images_kept"]) == (0, 0, 0)


def test_images_already_kept_by_an_earlier_run_are_dropped_with_the_earlier_cluster(raw_images):
    first = curate(
        build_table([image_row(raw_images["a"], U + "a.png", 0), image_row(raw_images["b"], U + "b.png", 1)])
    )
    rows = [
        image_row(raw_images["near_a"], U + "again_near_a.jpg", 10),
        image_row(raw_images["b"], U + "again_b.png", 11),
        image_row(raw_images["c"], U + "new_c.jpg", 12),
    ]
    out = curate(build_table(rows), CurateConfig(), reference=first.kept)
    assert by_url(out.dropped, "drop_reason") == {
        U + "again_near_a.jpg": "near_duplicate",
        U + "again_b.png": "exact_duplicate",
    }
    earlier = by_url(first.kept, "record_id")
    clusters = by_url(out.dropped, "near_dup_cluster")
    assert clusters == {U + "again_near_a.jpg": earlier[U + "a.png"], U + "again_b.png": earlier[U + "b.png"]}
    assert out.kept.column("url").to_pylist() == [U + "new_c.jpg"]
    assert out.counters["known_duplicates"] == 2
    with pytest.raises(ValueError, match="reference table lacks"):
        curate(build_table(rows), CurateConfig(), reference=first.kept.select(["record_id"]))


DATA = Path(__file__).parent / "fixture_images"


def test_distinct_fine_textures_are_not_merged_but_their_copies_are():
    # Three distinct "checks" pictures from the sample site whose pHashes lie 2-6 bits apart (pHash keeps only
    # the lowest frequencies), and a "stripes" picture with its planted resized, re-encoded copy (6 bits).
    names = ["checks_a", "checks_b", "checks_c", "stripes", "stripes_near"]
    rows = [
        image_row((DATA / f"{name}.jpg").read_bytes(), f"http://127.0.0.1/img/{name}.jpg", k)
        for k, name in enumerate(names)
    ]
    hashes = [int(compute_phash(Image.open(DATA / f"{name}.jpg"))) for name in names[:3]]
    assert max(bin(a ^ b).count("1") for a in hashes for b in hashes) <= 10  # they do fool pHash
    out = curate(build_table(rows), CurateConfig())
    assert out.counters["near_duplicates"] == 1
    assert out.dropped.column("drop_reason").to_pylist() == ["near_duplicate"]
    kept = set(out.kept.column("url").to_pylist())
    assert {f"http://127.0.0.1/img/{name}.jpg" for name in names[:3]} <= kept
    clusters = by_url(build_table(out.kept.to_pylist() + out.dropped.to_pylist()), "near_dup_cluster")
    assert clusters["http://127.0.0.1/img/stripes.jpg"] == clusters["http://127.0.0.1/img/stripes_near.jpg"]

"""Copy detection: planted rotations, letterboxing, crops and overlays of photo tiles are found, hard negatives are not,
and curate (one process or sharded) turns the found pairs into near-duplicate clusters."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from curation_records import build_table, encode, image_row
from test_shards import outcome, write_inputs

from bench.photo_copies import TEXTURES, TRANSFORMS, cut_tiles, jpeg, load_photo, make_photo_set
from corpus.store import DataRoot
from curation.copies import (
    COLOUR_DIM,
    CopyFeatures,
    compute_copy_features,
    decode_for_copies,
    find_copies,
    find_copy_candidates,
    score_copy,
)
from curation.curate import curate, run_curate
from curation.curate_config import CurateConfig
from curation.dedup import find_pairs_within
from curation.images import compute_phashes
from curation.semantic import find_nearest_pairs

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


@pytest.fixture(scope="module")
def photo_set():
    """12 tiles of 4 photos, each with one copy (3 of each transform), then 6 texture tiles with no copy."""
    images, _, pairs, kinds = make_photo_set(seed=2, photos=PHOTOS, tiles_per_photo=3)
    textures = [jpeg(tile, 90) for name in TEXTURES[:3] for tile in cut_tiles(load_photo(name), 2)]
    return images + textures, pairs, kinds


@pytest.fixture(scope="module")
def found(photo_set):
    images, _, _ = photo_set
    return {tuple(p) for p in find_copies(images).tolist()}


def test_each_transform_is_found_where_phash_misses_it(photo_set, found):
    images, pairs, kinds = photo_set
    planted = [tuple(p) for p in pairs.tolist()]
    for kind in TRANSFORMS:
        of_kind = [p for p, k in zip(planted, kinds, strict=True) if k == kind]
        assert sum(p in found for p in of_kind) >= 2, (kind, sorted(found))
    assert sum(p in found for p in planted) >= 11
    hashes, _ = compute_phashes(images)
    by_phash = {tuple(p) for p in find_pairs_within(hashes, 10).tolist()}
    assert sum(p in by_phash for p in planted) <= 4  # the copies this search is for


def test_hard_negatives_are_not_merged(photo_set, found):
    _, pairs, _ = photo_set
    # Neighbouring tiles of one photo and patches of one texture are never linked: only planted pairs are found.
    assert found <= {tuple(p) for p in pairs.tolist()}
    brick = [decode_for_copies(jpeg(tile, 90)) for tile in cut_tiles(load_photo("brick"), 2)]
    inliers, agreement = score_copy(*(compute_copy_features(rgb) for rgb in brick))
    assert agreement < 0.5, (inliers, agreement)  # a repeating wall matches geometrically, not photometrically


def test_features_round_trip_and_candidates():
    rgb = decode_for_copies(jpeg(cut_tiles(load_photo("coffee"), 1)[0], 90))
    features = compute_copy_features(rgb)
    again = CopyFeatures.from_bytes(features.to_bytes())
    assert len(features.points) >= 100
    for name in ("points", "descriptors", "thumbnail"):
        assert np.array_equal(getattr(again, name), getattr(features, name))
    assert score_copy(features, again)[1] == 1.0
    emb = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    assert find_nearest_pairs(emb, 1).tolist() == [[0, 1], [2, 3]]
    with pytest.raises(ValueError, match="colours must be"):
        find_copy_candidates(np.zeros((3, COLOUR_DIM + 1)))


def test_large_images_are_reduced_before_features_and_still_match():
    photo = load_photo("astronaut").resize((1200, 1200))
    png, half = encode(photo, "PNG"), jpeg(photo.resize((600, 600)).crop((60, 60, 540, 540)), 80)
    rgb = decode_for_copies(png)
    assert rgb.shape[2] == 3 and 256 <= min(rgb.shape[:2]) < 512  # reduced in strips, never held as full RGB
    assert 256 <= min(decode_for_copies(half).shape[:2]) < 512  # a JPEG at a DCT scale
    assert find_copies([png, half]).tolist() == [[0, 1]]


def _records(images: list[bytes]) -> pa.Table:
    return build_table([image_row(data, f"http://127.0.0.1/img/{k:03d}.jpg", k) for k, data in enumerate(images)])


def test_curate_clusters_the_found_copies_and_sharded_runs_agree(tmp_path, photo_set, found, monkeypatch):
    images, _, _ = photo_set
    table = _records(images)
    cfg = CurateConfig(semantic_near_duplicates=True)
    result = curate(table, cfg)
    cluster = {
        url: c
        for part in (result.kept, result.dropped)
        for url, c in zip(part.column("url").to_pylist(), part.column("near_dup_cluster").to_pylist(), strict=True)
    }
    urls = table.column("url").to_pylist()
    for a, b in found:
        assert cluster[urls[a]] == cluster[urls[b]]
    reasons = result.dropped.column("drop_reason").to_pylist()
    assert reasons == ["near_duplicate"] * len(found)
    assert len(set(cluster.values())) == len(images) - len(found)
    assert curate(table).dropped.num_rows < len(found)  # pHash alone keeps most of these copies

    single, sharded = DataRoot(str(tmp_path / "single")), DataRoot(str(tmp_path / "sharded"))
    inputs = [write_inputs(single, table, "crawl-1", 3)]
    write_inputs(sharded, table, "crawl-1", 3)
    expected = run_curate(single, cfg, inputs, index_path=None)
    monkeypatch.setattr("curation.rounds.GATHER_COPY_LINKS", 1)  # each other end's keypoints read on their own
    report = run_curate(sharded, cfg, inputs, shards=3, partitions=2, index_path=None)
    assert report["shards"] == 3 and "copy candidates" in report["round_seconds"]
    for part, in_memory in (("kept", result.kept), ("dropped", result.dropped)):
        assert outcome(sharded.read_table(f"{report['output']}/{part}")) == outcome(in_memory)
        assert outcome(single.read_table(f"{expected['output']}/{part}")) == outcome(in_memory)

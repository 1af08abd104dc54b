"""pHash near-duplicate clustering over uint64 hashes, and text normalisation."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from curation_records import encode, smooth_image
from PIL import Image

import curation.search as search
from curation.curate_config import CurateConfig
from curation.dedup import (
    find_near_duplicates,
    find_nearest,
    find_pairs_within,
    hamming_distance_matrix,
    normalize_text,
)
from curation.images import compute_phash, decode_image
from curation.measure import SIGNATURE_DIM


def test_hamming_distance_matrix_counts_differing_bits():
    hashes = np.array([0, 1, 0b1011, 2**64 - 1], dtype=np.uint64)
    d = hamming_distance_matrix(hashes)
    assert d.shape == (4, 4)
    assert d[0].tolist() == [0, 1, 3, 64]
    assert (d == d.T).all()


def test_clusters_are_transitive_and_labelled_in_order_of_first_appearance():
    base = np.uint64(0xF0F0_F0F0_F0F0_F0F0)
    one_bit, two_bits = base ^ np.uint64(1), base ^ np.uint64(3)
    far = ~base
    labels = find_near_duplicates(np.array([far, base, one_bit, two_bits], dtype=np.uint64), max_distance=1)
    # two_bits is 2 from base but 1 from one_bit: single linkage joins all three.
    assert labels.tolist() == [0, 1, 1, 1]
    assert find_near_duplicates(np.array([base, two_bits], dtype=np.uint64), max_distance=1).tolist() == [0, 1]
    assert find_near_duplicates(np.zeros(0, dtype=np.uint64), 10).shape == (0,)


def test_bad_hash_arrays_are_refused():
    with pytest.raises(ValueError, match="uint64"):
        find_near_duplicates(np.array([1, 2], dtype=np.int64), 10)
    with pytest.raises(ValueError, match="max_distance"):
        find_near_duplicates(np.array([1], dtype=np.uint64), 65)


def test_default_threshold_separates_reencoded_copies_from_distinct_images():
    originals = [smooth_image(seed) for seed in range(20)]
    copies = [decode_image(encode(im.resize((160, 120)), "JPEG", quality=60)) for im in originals]
    hashes = np.array([compute_phash(im) for im in originals + copies], dtype=np.uint64)
    labels = find_near_duplicates(hashes, max_distance=10)
    assert labels[:20].tolist() == list(range(20))  # no two distinct images merged
    assert labels[20:].tolist() == labels[:20].tolist()  # every copy joins its original


def test_phash_is_a_uint64():
    assert isinstance(compute_phash(Image.new("RGB", (64, 64), "white")), np.uint64)


def test_normalize_text_folds_case_width_and_whitespace():
    assert normalize_text("  Ｃａｔｓ\tARE\n\ngreat ") == "cats are great"


def test_find_nearest_returns_index_and_distance_to_the_reference():
    index, distance = find_nearest(np.array([0b111, 0], dtype=np.uint64), np.array([2**64 - 1, 0b011], dtype=np.uint64))
    assert index.tolist() == [1, 1] and distance.tolist() == [1, 2]
    index, distance = find_nearest(np.array([5], dtype=np.uint64), np.zeros(0, dtype=np.uint64))
    assert index.tolist() == [-1] and distance.tolist() == [65]


def test_multi_index_search_finds_exactly_the_pairs_brute_force_finds():
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, 3000, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, 3000, dtype=np.uint64)
    flips = np.zeros(300, dtype=np.uint64)
    for _ in range(10):
        flips |= np.uint64(1) << rng.integers(0, 64, 300).astype(np.uint64)
    hashes = np.concatenate([hashes, hashes[:300] ^ flips])  # planted: <= 10 bits from an original
    for radius in (0, 4, 10, 20):
        i, j = np.nonzero(hamming_distance_matrix(hashes) <= radius)
        truth = {(a, b) for a, b in zip(i.tolist(), j.tolist(), strict=True) if a < b}
        assert {tuple(p) for p in find_pairs_within(hashes, radius).tolist()} == truth
    assert len({tuple(p) for p in find_pairs_within(hashes, 10).tolist()}) >= 300
    reference = hashes[:50]
    pairs = find_pairs_within(hashes[3000:3010], 10, reference)
    assert sorted(pairs[:, 0].tolist()) == list(range(10)) and (pairs[:, 1] == pairs[:, 0]).all()


def test_candidate_links_are_confirmed_alike_in_chunks(monkeypatch):
    rng = np.random.default_rng(7)
    base = rng.random((6, SIGNATURE_DIM), dtype=np.float32)
    signatures = np.concatenate([base, base + rng.normal(0, 0.004, base.shape).astype(np.float32)])
    features = pa.table(
        {
            "g": pa.array(np.arange(12, dtype=np.int64)),
            "signature": pa.array(list(signatures), pa.large_list(pa.float32())),
        }
    )
    links = np.array([(k, k + 6) for k in range(6)] + [(k, (k + 1) % 6) for k in range(6)], dtype=np.int64)
    whole = search.confirm_image_links(links, features, CurateConfig())
    assert whole.tolist() == [[k, k + 6] for k in range(6)]  # the copies agree, the distinct images do not
    monkeypatch.setattr(search, "_LINKS_AT_ONCE", 5)
    assert np.array_equal(search.confirm_image_links(links, features, CurateConfig()), whole)

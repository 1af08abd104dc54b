"""MinHash LSH finds planted near-duplicate pages (also in CJK), keeps distinct pages apart, and says why."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from curation_records import article, build_table, by_url, edit, planted_pairs_table, text_row

from curation.curate import curate
from curation.curate_config import CurateConfig
from curation.minhash import (
    BANDS,
    RECALL_BANDS,
    ROWS,
    SKETCH_WIDTH,
    VERIFY_THRESHOLD,
    cluster_bands,
    cluster_text_batches,
    cluster_verified,
    compute_bands,
    compute_page_keys,
    compute_signatures,
    compute_text_bands,
    compute_text_bands_batches,
    estimate_jaccard,
    hash_shingles,
    match_bands,
    tokenize,
    union,
)

P = "http://127.0.0.1/"


def test_tokens_are_words_or_characters_where_a_script_has_no_spaces():
    assert tokenize("Ｈｅｌｌｏ,  WORLD! it's") == ["hello", "world", "it", "s"]
    assert tokenize("猫が好きです cats") == ["猫", "が", "好", "き", "で", "す", "cats"]


def test_shingle_hashes_ignore_case_punctuation_and_spacing_and_count_shingles():
    texts = ["One two three four five six", "ONE, two -- three four five   six!", "", None, "a b"]
    hashes, offsets = hash_shingles(texts)
    assert offsets.tolist() == [0, 2, 4, 4, 4, 5]  # 6 tokens -> 2 five-grams; short text -> 1 shingle; empty -> 0
    assert hashes[0:2].tolist() == hashes[2:4].tolist()
    assert hashes[0] != hashes[1]


def test_signatures_estimate_jaccard():
    base = article(1, 400)
    near, far = edit(base, 2, 8), article(3, 400)
    hashes, offsets = hash_shingles([base, near, far])
    sig = compute_signatures(hashes, offsets)
    assert sig.shape == (3, BANDS * ROWS)
    sets = [set(hashes[offsets[k] : offsets[k + 1]].tolist()) for k in range(3)]
    true_near = len(sets[0] & sets[1]) / len(sets[0] | sets[1])
    assert abs((sig[0] == sig[1]).mean() - true_near) < 0.12
    assert (sig[0] == sig[2]).mean() < 0.05


def test_lsh_clusters_planted_near_duplicates_and_nothing_else():
    originals = [article(seed) for seed in range(200)]
    copies = [edit(originals[k], 1000 + k, 2) for k in range(0, 200, 4)]
    roots = cluster_bands(compute_text_bands(originals + copies))
    assert roots[:200].tolist() == list(range(200))  # no two distinct pages merged
    found = sum(roots[200 + j] == k for j, k in enumerate(range(0, 200, 4)))
    # 2 edits in 120 words leave Jaccard >= 106/126 = 0.84; LSH catches such a pair with p = 1 - (1 - 0.84^8)^14 = 0.98.
    assert found >= 46


def shingle_jaccard(a: str, b: str) -> float:
    hashes, offsets = hash_shingles([a, b])
    sa, sb = set(hashes[: offsets[1]].tolist()), set(hashes[offsets[1] :].tolist())
    return len(sa & sb) / len(sa | sb)


def test_batches_give_the_band_keys_and_clusters_of_the_whole_list():
    originals = [article(seed) for seed in range(30)]
    texts = originals + [edit(originals[k], 500 + k, 2) for k in range(10)] + ["", None]
    cuts = [0, 7, 7, 20, 41, len(texts)]  # uneven, one empty batch
    batches = [texts[a:b] for a, b in itertools.pairwise(cuts)]
    streamed = list(compute_text_bands_batches(batches))
    assert [keys.shape[0] for keys, _ in streamed] == [7, 0, 13, 21, 1]
    assert all(sketch is None for _, sketch in streamed)
    whole = compute_text_bands(texts)
    assert np.array_equal(np.concatenate([keys for keys, _ in streamed]), whole)
    assert cluster_text_batches(iter(batches)).tolist() == cluster_bands(whole).tolist()
    with_sketches = list(compute_text_bands_batches(batches, recall=True))
    assert [s.shape for _, s in with_sketches] == [(n, SKETCH_WIDTH) for n in (7, 0, 13, 21, 1)]
    assert [k.shape for k, _ in with_sketches] == [(n, RECALL_BANDS) for n in (7, 0, 13, 21, 1)]
    assert with_sketches[-1][1].dtype == np.uint16 and (with_sketches[-1][1] == 2**16 - 1).all()  # None: no shingles
    plain, recall, sketches = compute_page_keys(texts)
    assert np.array_equal(plain, whole)  # one signature serves both settings and the dedup index's keys
    assert np.array_equal(recall, np.concatenate([k for k, _ in with_sketches]))
    assert np.array_equal(sketches, np.concatenate([s for _, s in with_sketches]))


def test_verified_clustering_joins_pairs_above_jaccard_0_8_and_never_those_below_0_6():
    originals = [article(seed, 400) for seed in range(100, 140)]
    near = [edit(originals[k], 2000 + k, 2 + k % 7) for k in range(20)]  # 2-8 edits of 400 words
    far = [edit(originals[k], 3000 + k, 30) for k in range(20, 40)]  # 30 edits
    near_j = [shingle_jaccard(originals[k], near[k]) for k in range(20)]
    far_j = [shingle_jaccard(originals[20 + k], far[k]) for k in range(20)]
    assert min(near_j) >= 0.8 and max(near_j) <= 0.96  # 0.82-0.95
    assert min(far_j) >= 0.45 and max(far_j) < 0.6  # 0.47-0.53
    texts = originals + near + far
    roots = cluster_text_batches([texts[:33], texts[33:]], verify_threshold=VERIFY_THRESHOLD)
    assert roots.tolist() == cluster_text_batches([texts], verify_threshold=VERIFY_THRESHOLD).tolist()
    assert roots[:40].tolist() == list(range(40))  # no two distinct pages merged
    assert roots[40:60].tolist() == list(range(20))  # every pair of Jaccard 0.8-0.95 found
    assert roots[60:80].tolist() == list(range(60, 80))  # no pair below 0.6 merged

    # The same candidates without the check merge below-0.6 pairs: what the verification is there for.
    keys = compute_page_keys(texts)[1]
    assert (cluster_bands(keys)[60:80] != np.arange(60, 80)).sum() >= 5


def test_jaccard_estimate_and_sketch_rows_are_checked():
    sketches = np.array([[1, 2, 3, 4], [1, 2, 0, 0], [5, 6, 7, 8]], dtype=np.uint32)
    assert estimate_jaccard(sketches, np.array([0, 0]), np.array([1, 2])).tolist() == [0.5, 0.0]
    keys = np.ones((3, 2), dtype=np.uint64)  # every row collides in every band
    assert cluster_verified(keys, sketches, threshold=0.5).tolist() == [0, 0, 2]
    with pytest.raises(ValueError, match="sketches for"):
        cluster_verified(keys, sketches[:2])


def test_empty_signatures_never_match_and_band_width_is_checked():
    keys = compute_text_bands(["", None, article(5)])
    assert (keys[:2] == 0).all()
    assert cluster_bands(keys).tolist() == [0, 1, 2]
    assert match_bands(keys[:2], keys).tolist() == [-1, -1]
    with pytest.raises(ValueError, match="bands x rows"):
        compute_bands(np.zeros((1, 10), dtype=np.uint64))


def test_union_is_transitive_with_smallest_root():
    parent = np.arange(6, dtype=np.int64)
    union(parent, np.array([5, 3, 4]), np.array([3, 4, 1]))
    union(parent, np.array([2]), np.array([0]))
    assert parent.tolist() == [0, 1, 0, 1, 1, 1]


def test_curate_drops_near_duplicate_pages_with_their_reason_and_cluster():
    a, b = article(11), article(12)
    cjk = "".join(np.random.default_rng(3).choice(list("猫犬鳥魚花草木山川空海雲雨雪風火水金土日月星"), 300))
    rows = [
        text_row(a, P + "a", 0),
        text_row(edit(a, 1, 3), P + "a-edited", 1),
        text_row(a.upper(), P + "a-shouting", 2),  # same normalised text: exact duplicate
        text_row(b, P + "b", 3),
        text_row(cjk, P + "cjk", 4),
        text_row(cjk[:150] + "鳥" + cjk[151:], P + "cjk-edited", 5),
    ]
    out = curate(build_table(rows), CurateConfig())
    assert by_url(out.dropped, "drop_reason") == {
        P + "a-edited": "near_duplicate_page",
        P + "a-shouting": "duplicate_page",
        P + "cjk-edited": "near_duplicate_page",
    }
    ids = by_url(out.kept, "record_id")
    clusters = {**by_url(out.kept, "near_dup_cluster"), **by_url(out.dropped, "near_dup_cluster")}
    assert clusters[P + "a-edited"] == clusters[P + "a-shouting"] == clusters[P + "a"] == ids[P + "a"]
    assert clusters[P + "cjk-edited"] == ids[P + "cjk"] and clusters[P + "b"] == ids[P + "b"]
    assert out.counters["near_duplicate_pages"] == 2 and out.counters["duplicate_pages"] == 1

    off = curate(build_table(rows), CurateConfig(text_near_duplicates=False))
    assert "near_duplicate_page" not in by_url(off.dropped, "drop_reason").values()


def test_curate_verify_drops_false_candidates_that_looser_bands_link_and_keeps_true_pairs():
    texts, near, far = planted_pairs_table()
    rows = [text_row(t, f"{P}page-{k}", k) for k, t in enumerate(texts)]
    _, recall, sketches = compute_page_keys(texts)
    # Far copies whose 20 x 5 band keys collide with their original's: plain LSH on these bands links them.
    linked = [k for k in far if (recall[k] == recall[k - 30]).any()]
    assert len(linked) >= 5
    assert (estimate_jaccard(sketches, np.array(linked), np.array(linked) - 30) < VERIFY_THRESHOLD).all()

    out = curate(build_table(rows), CurateConfig(text_near_dup_verify=True))
    reasons, ids = by_url(out.dropped, "drop_reason"), by_url(out.kept, "record_id")
    assert reasons == {f"{P}page-{k}": "near_duplicate_page" for k in near}  # every true pair, nothing else
    clusters = by_url(out.dropped, "near_dup_cluster")
    assert all(clusters[f"{P}page-{k}"] == ids[f"{P}page-{k - 40}"] for k in near)
    assert all(f"{P}page-{k}" in ids for k in linked)  # the false candidates stay, each its own cluster
    assert out.counters["near_duplicate_pages"] == len(near)

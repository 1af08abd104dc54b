"""Semantic near-duplicates: cosine pairs above a threshold, blockwise, clustered like the pHash search."""

from __future__ import annotations

import numpy as np
import pytest

from curation import semantic
from curation.semantic import find_semantic_near_duplicates, find_similar_pairs


def _planted(n: int = 30, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """n random directions plus a slightly moved copy of every third one (the planted near-duplicates)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, dim))
    copies = base[::3] * 2.5 + rng.normal(scale=0.05, size=base[::3].shape)  # scale does not matter to cosine
    planted = [(i, n + j) for j, i in enumerate(range(0, n, 3))]
    return np.vstack([base, copies]), planted


def test_planted_copies_are_found_and_nothing_else(monkeypatch) -> None:
    emb, planted = _planted()
    monkeypatch.setattr(semantic, "_BLOCK_ROWS", 7)  # several blocks, pairs crossing them
    pairs, sims = find_similar_pairs(emb, 0.95)
    assert sorted(map(tuple, pairs.tolist())) == planted
    assert np.all(sims >= 0.95) and np.all(pairs[:, 0] < pairs[:, 1])
    labels = find_semantic_near_duplicates(emb, 0.95)
    assert all(labels[a] == labels[b] for a, b in planted)
    assert len(set(labels.tolist())) == len(emb) - len(planted)


def test_against_a_reference_set_and_bad_input() -> None:
    emb, _ = _planted()
    pairs, _ = find_similar_pairs(emb[30:], 0.95, reference=emb[:30])
    assert sorted(map(tuple, pairs.tolist())) == [(j, 3 * j) for j in range(10)]
    with pytest.raises(ValueError, match="min_cosine"):
        find_similar_pairs(emb, 1.5)
    with pytest.raises(ValueError, match="dims"):
        find_similar_pairs(emb, 0.9, reference=np.ones((2, 3)))
    with pytest.raises(ValueError, match="finite 2-D"):
        find_similar_pairs(np.array([np.nan, 1.0]), 0.9)

"""Semantic near-duplicates: images whose embeddings point the same way (cosine similarity above a threshold).

A perceptual hash sees the layout of the pixels, so a small rotation, letterboxing, a crop or an overlay moves
it by many bits; an embedding from an encoder trained to ignore such changes (training.simclr) barely moves.
This module holds the search over given embeddings; which encoder makes them is the caller's choice. Its
nearest-neighbour pairs are also the candidates curation.copies checks with local features.
"""

from __future__ import annotations

import numpy as np

from curation.minhash import union

# Rows per block of the similarity matrix, so a block (B, N) of float32 stays near 64 MB at N = 8192.
_BLOCK_ROWS = 2048


def _unit_rows(name: str, embeddings: np.ndarray) -> np.ndarray:
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or not np.all(np.isfinite(emb)):
        raise ValueError(f"{name} must be a finite 2-D array (N, D); got shape {emb.shape}")
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    return emb / np.where(norms > 0, norms, 1.0)


def find_similar_pairs(
    embeddings: np.ndarray, min_cosine: float, reference: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of rows whose cosine similarity is >= `min_cosine`: (pairs (P, 2) int64, similarities (P,)).

    Without `reference`, pairs i < j within `embeddings` (N, D); with it (M, D), pairs (i in embeddings,
    j in reference). Rows need not be normalised. Exact (every pair is compared, blockwise): fine to 10^5
    rows; beyond that an approximate index is the tool.
    """
    if not -1.0 <= min_cosine <= 1.0:
        raise ValueError(f"min_cosine must be in [-1, 1]; got {min_cosine}")
    emb = _unit_rows("embeddings", embeddings)
    ref = emb if reference is None else _unit_rows("reference", reference)
    if ref.shape[1] != emb.shape[1]:
        raise ValueError(f"reference has {ref.shape[1]} dims but embeddings has {emb.shape[1]}")
    found, sims = [], []
    for start in range(0, emb.shape[0], _BLOCK_ROWS):
        block = emb[start : start + _BLOCK_ROWS] @ ref.T
        rows, cols = np.nonzero(block >= min_cosine)
        rows = rows + start
        if reference is None:
            keep = rows < cols
            rows, cols = rows[keep], cols[keep]
        found.append(np.stack([rows, cols], axis=1))
        sims.append(block[rows - start, cols])
    if not found:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.float32)
    return np.concatenate(found).astype(np.int64), np.concatenate(sims).astype(np.float32)


def find_semantic_near_duplicates(embeddings: np.ndarray, min_cosine: float) -> np.ndarray:
    """Cluster labels (N,) int64 for `embeddings` (N, D): rows linked by cosine >= `min_cosine` share a label
    (connected components, as curation.dedup.find_near_duplicates). Labels are 0..K-1 by first appearance."""
    pairs, _ = find_similar_pairs(embeddings, min_cosine)
    parent = np.arange(np.asarray(embeddings).shape[0], dtype=np.int64)
    union(parent, pairs[:, 0], pairs[:, 1])
    _, labels = np.unique(parent, return_inverse=True)
    return labels.astype(np.int64)


def find_nearest_pairs(embeddings: np.ndarray, neighbours: int) -> np.ndarray:
    """Pairs (P, 2) int64, i < j, unique, linking each row of `embeddings` (N, D) to its `neighbours` most
    cosine-similar other rows (a candidate list for a finer check, not a verdict). Exact, blockwise."""
    if neighbours < 1:
        raise ValueError(f"neighbours must be >= 1; got {neighbours}")
    emb = _unit_rows("embeddings", embeddings)
    n = emb.shape[0]
    k = min(neighbours, n - 1)
    if k < 1:
        return np.zeros((0, 2), dtype=np.int64)
    found = []
    for start in range(0, n, _BLOCK_ROWS):
        block = emb[start : start + _BLOCK_ROWS] @ emb.T
        rows = np.arange(block.shape[0])
        block[rows, rows + start] = -np.inf  # not its own neighbour
        nearest = np.argpartition(-block, k - 1, axis=1)[:, :k]
        found.append(np.stack([np.repeat(rows + start, k), nearest.ravel()], axis=1))
    pairs = np.concatenate(found).astype(np.int64)
    return np.unique(np.sort(pairs, axis=1), axis=0)

"""Duplicate detection: exact content hashes, text normalisation, and pHash near-duplicate clustering."""

from __future__ import annotations

import hashlib
import re
import unicodedata

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

_WHITESPACE = re.compile(r"\s+")

# Rows of the distance matrix computed at once: 1024 x N uint8 distances stays a few MB for N <= 10^4.
_BLOCK_ROWS = 1024


def hash_bytes(data: bytes) -> str:
    """SHA-256 hex of raw bytes: the exact-duplicate key of an image."""
    return hashlib.sha256(data).hexdigest()


def normalize_text(text: str) -> str:
    """NFKC-normalised, whitespace-collapsed, lowercased text: what two copies of one page share."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip().lower()


def hash_text(text: str) -> str:
    """SHA-256 hex of `normalize_text(text)`: the duplicate-page key."""
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()


def _as_hashes(hashes: np.ndarray) -> np.ndarray:
    array = np.asarray(hashes)
    if array.ndim != 1:
        raise ValueError(f"hashes must be 1-D (N,), got shape {array.shape}")
    if array.dtype != np.uint64:
        raise ValueError(f"hashes must be uint64, got {array.dtype}")
    return array


def hamming_distance_matrix(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Hamming distances between uint64 hashes `a` (N,) and `b` (M,) (default `a`): (N, M) uint8 in [0, 64]."""
    a = _as_hashes(a)
    b = a if b is None else _as_hashes(b)
    return np.bitwise_count(a[:, None] ^ b[None, :]).astype(np.uint8)


def find_near_duplicates(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """Cluster labels (N,) int64 for uint64 perceptual hashes (N,): equal label = near-duplicates.

    Two hashes are linked when their Hamming distance is <= `max_distance`; clusters are the connected
    components of that graph (single linkage, as union-find gives), so a chain A~B~C joins A and C
    even when A and C are further apart. Labels are 0..K-1 in order of first appearance.
    Cost: O(N^2) popcounts, vectorised in blocks of rows (O(N * block) memory); fine up to ~10^5 images.
    """
    hashes = _as_hashes(hashes)
    if not 0 <= max_distance <= 64:
        raise ValueError(f"max_distance must be in [0, 64], got {max_distance}")
    n = hashes.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    for start in range(0, n, _BLOCK_ROWS):
        block = hamming_distance_matrix(hashes[start : start + _BLOCK_ROWS], hashes)
        i, j = np.nonzero(block <= max_distance)
        i = i + start
        upper = j > i
        rows.append(i[upper])
        cols.append(j[upper])
    row = np.concatenate(rows)
    col = np.concatenate(cols)
    graph = coo_matrix((np.ones(row.shape[0], dtype=np.int8), (row, col)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    # Renumber by first appearance so labels do not depend on scipy's traversal order.
    _, first_index, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first_index))
    return order[inverse].astype(np.int64)


def find_nearest(hashes: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each hash (N,), the index of its nearest reference hash (M,) and that Hamming distance.

    Returns (index (N,) int64, distance (N,) int64); with no reference, index -1 and distance 65.
    Cost: O(N * M) popcounts in blocks of rows.
    """
    hashes, reference = _as_hashes(hashes), _as_hashes(reference)
    n = hashes.shape[0]
    if reference.shape[0] == 0:
        return np.full(n, -1, dtype=np.int64), np.full(n, 65, dtype=np.int64)
    index = np.empty(n, dtype=np.int64)
    distance = np.empty(n, dtype=np.int64)
    for start in range(0, n, _BLOCK_ROWS):
        block = hamming_distance_matrix(hashes[start : start + _BLOCK_ROWS], reference)
        index[start : start + block.shape[0]] = block.argmin(axis=1)
        distance[start : start + block.shape[0]] = block.min(axis=1)
    return index, distance

"""Duplicate detection: exact content hashes, text normalisation, pHash near-duplicates by multi-index hashing."""

from __future__ import annotations

import hashlib
import re
import unicodedata

import numpy as np

from curation.minhash import union

_WHITESPACE = re.compile(r"\s+")

# Rows of the distance matrix computed at once: 1024 x N uint8 distances stays a few MB for N <= 10^4.
_BLOCK_ROWS = 1024
# Multi-index hashing: 4 chunks of 16 bits (a 65,536-bucket table per chunk; Norouzi et al. pick m ~ bits / log2 N).
_CHUNKS = 4
_CHUNK_BITS = 16
# Queries probed at once: 4096 x 137 probes keeps the candidate arrays to a few MB.
_PROBE_ROWS = 4096


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


def _chunk_masks(bits: int, radius: int) -> np.ndarray:
    """Every `bits`-bit XOR mask with at most `radius` set bits, as uint64 (the probes of one MIH chunk)."""
    masks = [0]
    for _ in range(radius):
        masks = sorted({m | (1 << b) for m in masks for b in range(bits)} | set(masks))
    return np.array(masks, dtype=np.uint64)


def find_pairs_within(hashes: np.ndarray, max_distance: int, reference: np.ndarray | None = None) -> np.ndarray:
    """Pairs (P, 2) int64 of (i, j) with Hamming(hashes[i], reference[j]) <= `max_distance`.

    With no `reference`, pairs within `hashes` with i < j. Multi-index hashing (Norouzi, Punjani & Fleet,
    CVPR 2012): the 64 bits are cut into 4 chunks of 16; two hashes within distance r agree to within
    r // 4 bits on at least one chunk (pigeonhole), so each hash probes, per chunk, the table buckets of
    all keys within r // 4 bits of its own and only those candidates are compared in full. For r = 10 that
    is 137 probes per chunk; candidates are ~M * 548 / 65536 per hash on random hashes, not M.
    Radii over 15 fall back to blocked all-pairs, which is then cheaper.
    """
    hashes = _as_hashes(hashes)
    if not 0 <= max_distance <= 64:
        raise ValueError(f"max_distance must be in [0, 64], got {max_distance}")
    self_join = reference is None
    reference = hashes if self_join else _as_hashes(reference)
    n, m = hashes.shape[0], reference.shape[0]
    if n == 0 or m == 0:
        return np.zeros((0, 2), dtype=np.int64)
    found: list[np.ndarray] = []
    if max_distance // _CHUNKS > 3:
        for start in range(0, n, _BLOCK_ROWS):
            i, j = np.nonzero(hamming_distance_matrix(hashes[start : start + _BLOCK_ROWS], reference) <= max_distance)
            found.append(np.stack([i + start, j], axis=1))
    else:
        masks = _chunk_masks(_CHUNK_BITS, max_distance // _CHUNKS)
        for chunk in range(_CHUNKS):
            shift = np.uint64(chunk * _CHUNK_BITS)
            ref_keys = ((reference >> shift) & np.uint64(0xFFFF)).astype(np.int64)
            order = np.argsort(ref_keys, kind="stable")
            bucket_start = np.zeros((1 << _CHUNK_BITS) + 1, dtype=np.int64)
            np.cumsum(np.bincount(ref_keys, minlength=1 << _CHUNK_BITS), out=bucket_start[1:])
            query_keys = (hashes >> shift) & np.uint64(0xFFFF)
            for start in range(0, n, _PROBE_ROWS):
                probes = (query_keys[start : start + _PROBE_ROWS, None] ^ masks[None, :]).astype(np.int64)
                lo, hi = bucket_start[probes].ravel(), bucket_start[probes + 1].ravel()
                sizes = hi - lo
                total = int(sizes.sum())
                if total == 0:
                    continue
                query = np.repeat(np.arange(start, start + probes.shape[0]).repeat(masks.size), sizes)
                within = np.arange(total) - np.repeat(np.cumsum(sizes) - sizes, sizes)
                candidate = order[np.repeat(lo, sizes) + within]
                close = np.bitwise_count(hashes[query] ^ reference[candidate]) <= max_distance
                found.append(np.stack([query[close], candidate[close]], axis=1))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.concatenate(found)
    if self_join:
        pairs = pairs[pairs[:, 0] < pairs[:, 1]]
    return np.unique(pairs, axis=0)


def find_near_duplicates(
    hashes: np.ndarray,
    max_distance: int,
    *,
    signatures: np.ndarray | None = None,
    max_signature_distance: float | None = None,
) -> np.ndarray:
    """Cluster labels (N,) int64 for uint64 perceptual hashes (N,): equal label = near-duplicates.

    Two hashes are linked when their Hamming distance is <= `max_distance` (found by multi-index hashing,
    `find_pairs_within`); clusters are the connected components of that graph (single linkage, as
    union-find gives), so a chain A~B~C joins A and C even when A and C are further apart.
    With `signatures` (N, D) (images.compute_signature), a pHash candidate pair is linked only when the
    mean absolute difference of its signatures is also <= `max_signature_distance`: the check that keeps
    distinct fine textures, which pHash cannot tell apart, from being merged.
    Labels are 0..K-1 in order of first appearance.
    """
    hashes = _as_hashes(hashes)
    pairs = find_pairs_within(hashes, max_distance)
    if signatures is not None and len(pairs):
        if max_signature_distance is None:
            raise ValueError("signatures need max_signature_distance")
        gaps = np.abs(signatures[pairs[:, 0]] - signatures[pairs[:, 1]]).mean(axis=1)
        pairs = pairs[gaps <= max_signature_distance]
    parent = np.arange(hashes.shape[0], dtype=np.int64)
    union(parent, pairs[:, 0], pairs[:, 1])
    # Roots are the smallest member index, so renumbering roots by value numbers clusters by first appearance.
    _, labels = np.unique(parent, return_inverse=True)
    return labels.astype(np.int64)


def find_nearest(hashes: np.ndarray, reference: np.ndarray, max_distance: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """For each hash (N,), the index of its nearest reference hash (M,) within `max_distance`, and that distance.

    Returns (index (N,) int64, distance (N,) int64); where no reference hash is within `max_distance`,
    index -1 and distance 65. Ties go to the lower reference index. Uses `find_pairs_within`.
    """
    hashes, reference = _as_hashes(hashes), _as_hashes(reference)
    n = hashes.shape[0]
    index = np.full(n, -1, dtype=np.int64)
    distance = np.full(n, 65, dtype=np.int64)
    pairs = find_pairs_within(hashes, max_distance, reference)
    if pairs.shape[0]:
        d = np.bitwise_count(hashes[pairs[:, 0]] ^ reference[pairs[:, 1]]).astype(np.int64)
        order = np.lexsort((pairs[:, 1], d, pairs[:, 0]))
        first = order[np.flatnonzero(np.r_[True, np.diff(pairs[order, 0]) != 0])]
        index[pairs[first, 0]] = pairs[first, 1]
        distance[pairs[first, 0]] = d[first]
    return index, distance

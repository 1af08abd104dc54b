"""MinHash signatures and LSH bands for text near-duplicates: shingling, vectorised hashing, union-find clustering."""

from __future__ import annotations

import string
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache

import numpy as np

# FineWeb's near-dedup setting, which is datatrove's MinhashConfig default: 5-gram word shingles,
# 14 buckets (bands) x 8 hashes (rows) = 112 permutations, 64-bit hash precision. With b=14, r=8 a pair is
# a candidate with probability 1 - (1 - s^8)^14: 0.5 at Jaccard s ~ 0.72, 0.92 at s = 0.8, 0.03 at s = 0.5.
NGRAM = 5
BANDS = 14
ROWS = 8
SEED = 1  # datatrove MinhashConfig.seed default; any fixed seed works, it only has to stay the same per index

# The higher-recall setting (`cluster_verified`): looser banding finds candidates, their signatures confirm them.
# It reuses the default's 112 MinHash values: 20 bands x 5 rows over the first 100 make a pair a candidate with
# p = 1 - (1 - s^5)^20: 0.9996 at s = 0.8, 0.97 at s = 0.7, 0.05 at s = 0.3 (so most pages sharing only
# boilerplate never reach the check); all 112 are the sketch that confirms it.
RECALL_BANDS = 20
RECALL_ROWS = 5
SKETCH_WIDTH = BANDS * ROWS
# A candidate is kept when the share of its 112 MinHash values that agree, an unbiased estimate of its Jaccard
# with standard deviation sqrt(s(1 - s)/112), is >= 0.7: 0.8 (the goal: keep pairs of Jaccard >= 0.8) less
# 2.6 deviations at s = 0.8 (0.038). Then a pair at s = 0.8 passes with p = 0.995, at 0.6 with 0.015, at 0.5 ~0.
VERIFY_THRESHOLD = 0.7

# Scripts written without spaces between words (Kana, Han, Thai): each character is a token there, so a
# "5-gram" is five characters, the usual shingle for Chinese/Japanese near-dedup (see `_token_bounds`).

_U64 = np.uint64
# Odd 64-bit multiplier of the byte-polynomial hash (the FNV-1a 64-bit prime, odd so it is invertible mod 2^64).
_POLY = _U64(0x100000001B3)
_POLY_INV = _U64(pow(0x100000001B3, -1, 2**64))
# Characters of text shingled per batch: the byte-level arrays (a few uint64 per byte) stay ~10 MB, and the
# cached power tables (2 x 8 bytes per byte of a batch) ~8 MB. Measured on bench/text_dedup.py's corpus:
# 1 << 18 peaks ~70 MB below 1 << 20 and is no slower (the arrays stay nearer the CPU caches).
_TEXT_BYTES_PER_BATCH = 1 << 18
# Candidate pairs whose sketches are compared at once: 2 x 16k x 112 uint16 gathered is ~7 MB.
_PAIRS_PER_BLOCK = 1 << 14
# Shingles hashed per block: a (112, block) uint64 matrix is ~7 MB, so memory stays flat whatever the batch size
# (1 << 15 measured no faster and 22 MB more).
_SHINGLES_PER_BLOCK = 1 << 13


def tokenize(text: str) -> list[str]:
    """Word tokens of NFKC-normalised, lowercased `text`, as `hash_shingles` sees them (for tests and reading).

    Punctuation and whitespace are dropped, so reflowed or re-punctuated copies give the same tokens; a
    character is a token in scripts without spaces between words.
    """
    data = np.frombuffer(unicodedata.normalize("NFKC", text).lower().encode("utf-8"), dtype=np.uint8)
    starts, ends = _token_bounds(data)
    raw = data.tobytes()
    return [raw[a:b].decode("utf-8") for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (Steele et al. 2014), in place on a uint64 array: spreads every bit to all others."""
    x ^= x >> _U64(30)
    x *= _U64(0xBF58476D1CE4E5B9)
    x ^= x >> _U64(27)
    x *= _U64(0x94D049BB133111EB)
    x ^= x >> _U64(31)
    return x


@lru_cache(maxsize=2)
def _power_table(base: int, n: int) -> np.ndarray:
    out = np.full(n, base, dtype=np.uint64)
    if n:
        out[0] = 1
        np.cumprod(out, out=out)
    out.flags.writeable = False
    return out


def _powers(base: np.uint64, n: int) -> np.ndarray:
    """base^0 .. base^(n-1) mod 2^64 as uint64 (numpy integer products wrap, which is the modulus we want).

    Read-only views of a cached table whose length is rounded up to a power of two, so batches reuse it.
    """
    return _power_table(int(base), 1 << max(n - 1, 1).bit_length())[:n]


def _byte_classes() -> np.ndarray:
    """Per byte value: is it part of a word? ASCII letters and digits are, other ASCII is not; bytes of
    non-ASCII characters are, except those `_token_bounds` marks as punctuation."""
    table = np.zeros(256, dtype=bool)
    for c in string.ascii_lowercase + string.ascii_uppercase + string.digits:
        table[ord(c)] = True
    table[0x80:] = True
    return table


_WORD_BYTE = _byte_classes()


def _token_bounds(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Byte [start, end) of every token in UTF-8 `data` (N,) uint8, found with array operations only.

    Tokens are runs of word bytes (see `_byte_classes`); General Punctuation (U+2000-U+206F), CJK
    punctuation (U+3000-U+303F) and Latin-1 symbols (U+00A0-U+00BF) separate words; each Kana/Han
    (U+3040-U+9FFF, U+F900-U+FAFF) and Thai (U+0E00-U+0E7F) character is a token of its own.
    """
    word = _WORD_BYTE[data]
    nxt = np.zeros_like(data)
    nxt[:-1] = data[1:]
    three_byte_punct = ((data == 0xE2) & ((nxt == 0x80) | (nxt == 0x81))) | ((data == 0xE3) & (nxt == 0x80))
    latin1_symbol = (data == 0xC2) & (nxt >= 0xA0) & (nxt <= 0xBF)
    for lead, width in ((three_byte_punct, 3), (latin1_symbol, 2)):
        positions = np.flatnonzero(lead)
        for k in range(width):
            word[np.minimum(positions + k, data.size - 1)] = False
    single = word & (
        ((data >= 0xE3) & (data <= 0xE9))
        | ((data == 0xE0) & ((nxt == 0xB8) | (nxt == 0xB9)))
        | ((data == 0xEF) & (nxt >= 0xA4) & (nxt <= 0xAB))
    )
    prev_word = np.zeros_like(word)
    prev_word[1:] = word[:-1]
    start = word & ~prev_word
    start |= single
    after_single = np.flatnonzero(single) + 3  # the character after a single-character token starts anew
    after_single = after_single[after_single < data.size]
    start[after_single] |= word[after_single]
    starts = np.flatnonzero(start)
    boundaries = np.flatnonzero(start | ~word)
    following = np.searchsorted(boundaries, starts, side="right")
    ends = np.append(boundaries, data.size)[following]
    return starts, ends


def hash_shingles(texts: Sequence[str | None], ngram: int = NGRAM) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of every `ngram`-token shingle of each text, computed for the whole batch in numpy.

    Returns (hashes (S,) uint64, offsets (N+1,) int64): text k's shingles are hashes[offsets[k]:offsets[k+1]].
    A text with fewer than `ngram` tokens is one shingle of all its tokens; an empty or None text has none.
    Text is NFKC-normalised and lowercased; tokens are as `tokenize` gives (see `_token_bounds`).
    How: the batch is one UTF-8 byte array; a token's polynomial hash is read off a prefix sum in O(1)
    (Karp-Rabin) and mixed with splitmix64; a shingle's hash combines its `ngram` token hashes. No Python
    loop runs per token or per shingle.
    """
    if ngram < 1:
        raise ValueError(f"ngram must be >= 1, got {ngram}")
    # NUL separates texts (so no token spans two); a NUL inside a text becomes a space.
    joined = "\x00".join(t.replace("\x00", " ") if t else "" for t in texts)
    data = np.frombuffer(unicodedata.normalize("NFKC", joined).lower().encode("utf-8"), dtype=np.uint8)
    starts, ends = _token_bounds(data)
    doc = np.searchsorted(np.flatnonzero(data == 0), starts)  # text of each token
    counts = np.bincount(doc, minlength=len(texts)).astype(np.int64)
    n_shingles = np.where(counts >= ngram, counts - ngram + 1, np.minimum(counts, 1))
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(n_shingles, out=offsets[1:])
    if offsets[-1] == 0:
        return np.zeros(0, dtype=np.uint64), offsets
    # Token hash: sum b_i * P^(end-1-i) over its bytes = (C[end] - C[start]) * P^(end-1), C[k] = sum_{i<k} b_i P^-i.
    prefix = np.zeros(data.size + 1, dtype=np.uint64)
    np.cumsum(np.multiply(data, _powers(_POLY_INV, data.size), dtype=np.uint64), out=prefix[1:])
    tokens = (prefix[ends] - prefix[starts]) * _powers(_POLY, data.size)[ends - 1]
    tokens ^= (ends - starts).astype(np.uint64)  # the length too: equal sums of unequal lengths must differ
    tokens = _mix64(tokens)
    # Shingle at token i: its tokens i..i+ngram-1 that belong to the same text, combined in order.
    n_tokens = tokens.size
    shingles = np.zeros(n_tokens, dtype=np.uint64)
    for k in range(ngram):
        inside = np.zeros(n_tokens, dtype=bool)
        inside[: n_tokens - k] = doc[k:] == doc[: n_tokens - k]
        part = np.zeros(n_tokens, dtype=np.uint64)
        part[: n_tokens - k] = tokens[k:]
        shingles = shingles * _POLY + np.where(inside, part, _U64(0))
    token_offsets = np.zeros(len(texts), dtype=np.int64)
    np.cumsum(counts[:-1], out=token_offsets[1:])
    first = np.repeat(token_offsets, n_shingles) + (np.arange(offsets[-1]) - np.repeat(offsets[:-1], n_shingles))
    return _mix64(shingles[first]), offsets


def make_permutations(num_perm: int = BANDS * ROWS, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) uint64 (num_perm,) of the hash family h(x) = a*x + b mod 2^64, a odd (so each h is a bijection)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2**64, size=num_perm, dtype=np.uint64, endpoint=False) | _U64(1)
    b = rng.integers(0, 2**64, size=num_perm, dtype=np.uint64, endpoint=False)
    return a, b


def compute_signatures(
    hashes: np.ndarray, offsets: np.ndarray, permutations: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """MinHash signatures (N, K) uint64 from shingle hashes (S,) and offsets (N+1,) as `hash_shingles` returns.

    Row k is min over text k's shingles of a_j * x + b_j; the family is multiply-add mod 2^64, whose order is
    set by the high bits (Dietzfelbinger's multiply-shift). A text without shingles gets all 2^64-1 (no match
    is ever made on it: see `compute_bands`). Cost: S*K multiply-adds, in blocks of _SHINGLES_PER_BLOCK shingles.
    """
    a, b = permutations if permutations is not None else make_permutations()
    n = offsets.shape[0] - 1
    signatures = np.full((n, a.shape[0]), np.iinfo(np.uint64).max, dtype=np.uint64)
    has = np.flatnonzero(offsets[1:] > offsets[:-1])
    start = 0
    while start < has.size:
        # Whole texts per block; a text longer than a block gets a block of its own.
        limit = offsets[has[start]] + _SHINGLES_PER_BLOCK
        stop = max(start + 1, int(np.searchsorted(offsets[has + 1], limit, side="right")))
        docs = has[start:stop]
        lo, hi = offsets[docs[0]], offsets[docs[-1] + 1]
        # (K, block) layout: reduceat along contiguous rows measured ~3x faster than (block, K) along axis 0.
        values = a[:, None] * hashes[None, lo:hi]
        values += b[:, None]
        signatures[docs] = np.minimum.reduceat(values, offsets[docs] - lo, axis=1).T
        start = stop
    return signatures


def compute_bands(signatures: np.ndarray, bands: int = BANDS, rows: int = ROWS) -> np.ndarray:
    """LSH band keys (N, bands) uint64: each band's `rows` signature values folded and mixed into one 64-bit key.

    Two texts are candidates when any band key is equal. Texts with no shingles get key 0 in every band and
    are never matched (callers pass `has_shingles`). Raises ValueError if the signature width is not bands*rows.
    """
    n, k = signatures.shape
    if k != bands * rows:
        raise ValueError(f"signatures have {k} values, bands x rows is {bands * rows}")
    grouped = signatures.reshape(n, bands, rows)
    keys = np.zeros((n, bands), dtype=np.uint64)
    for r in range(rows):
        keys = _mix64(keys * _POLY + grouped[:, :, r])
    keys[(signatures == np.iinfo(np.uint64).max).all(axis=1)] = 0
    return keys


def _batch_signatures(
    texts: Sequence[str | None], ngram: int, permutations: tuple[np.ndarray, np.ndarray]
) -> Iterator[tuple[int, int, np.ndarray]]:
    """(start, stop, signatures of texts[start:stop]) over sub-batches of about _TEXT_BYTES_PER_BATCH characters,
    so the working arrays stay a few hundred MB at most whatever len(texts) is."""
    lengths = np.fromiter((len(t) if t else 0 for t in texts), dtype=np.int64, count=len(texts))
    ends = np.cumsum(lengths)
    start = 0
    while start < len(texts):
        budget = (ends[start - 1] if start else 0) + _TEXT_BYTES_PER_BATCH
        stop = max(start + 1, int(np.searchsorted(ends, budget, side="right")))
        hashes, offsets = hash_shingles(texts[start:stop], ngram)
        yield start, stop, compute_signatures(hashes, offsets, permutations)
        start = stop


def compute_text_bands(
    texts: Sequence[str | None], ngram: int = NGRAM, bands: int = BANDS, rows: int = ROWS
) -> np.ndarray:
    """Band keys (N, bands) uint64 of texts: shingle, MinHash and band; all-zero rows mean "no shingles".

    Texts go through in sub-batches (see `_batch_signatures`); the result is 8 * bands bytes per text.
    """
    permutations = make_permutations(bands * rows)
    keys = np.zeros((len(texts), bands), dtype=np.uint64)
    for start, stop, signatures in _batch_signatures(texts, ngram, permutations):
        keys[start:stop] = compute_bands(signatures, bands, rows)
    return keys


def sketch_signatures(signatures: np.ndarray) -> np.ndarray:
    """The low 16 bits of each MinHash value (N, K) uint16: what `cluster_verified` compares, at a quarter the memory.

    b-bit MinHash (Li & Koenig 2010): two unequal 64-bit minima agree in their low 16 bits with probability
    2^-16, so the agreement rate still estimates Jaccard (bias < 2e-5). No shingles stays all ones.
    """
    return (signatures & _U64(0xFFFF)).astype(np.uint16)


def compute_recall_keys(signatures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall band keys (N, RECALL_BANDS) uint64, sketches (N, SKETCH_WIDTH) uint16) of default-width
    signatures (N, BANDS * ROWS): the higher-recall setting's bands over the first 100 values, and the sketch."""
    keys = compute_bands(signatures[:, : RECALL_BANDS * RECALL_ROWS], RECALL_BANDS, RECALL_ROWS)
    return keys, sketch_signatures(signatures)


def compute_text_bands_batches(
    batches: Iterable[Sequence[str | None]], ngram: int = NGRAM, *, recall: bool = False
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """(band keys, sketches or None) for each batch of texts, in order: 14 x 8 keys (N, BANDS) uint64, or with
    `recall` the higher-recall setting's (`compute_recall_keys`): (N, RECALL_BANDS) keys and (N, SKETCH_WIDTH)
    uint16 sketches, which `cluster_verified` needs.

    For corpora that do not fit in memory as strings: pass e.g. the text column of each RecordBatch of
    `pyarrow.parquet.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=2000)`; only one batch of texts
    is alive at a time, and what a batch leaves behind is 112 bytes per text (384 with `recall`). The default
    keys equal `compute_text_bands` over all texts at once.
    """
    permutations = make_permutations(BANDS * ROWS)
    for texts in batches:
        keys = np.zeros((len(texts), RECALL_BANDS if recall else BANDS), dtype=np.uint64)
        kept = np.zeros((len(texts), SKETCH_WIDTH), dtype=np.uint16) if recall else None
        for start, stop, signatures in _batch_signatures(texts, ngram, permutations):
            if kept is None:
                keys[start:stop] = compute_bands(signatures)
            else:
                keys[start:stop], kept[start:stop] = compute_recall_keys(signatures)
        yield keys, kept


def compute_page_keys(texts: Sequence[str | None], ngram: int = NGRAM) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(14 x 8 band keys (N, BANDS), recall band keys (N, RECALL_BANDS), sketches (N, SKETCH_WIDTH) uint16) of
    texts from one signature each: what curate's higher-recall setting needs (the first are what the dedup
    index holds, the others what `cluster_verified` compares)."""
    permutations = make_permutations(BANDS * ROWS)
    keys = np.zeros((len(texts), BANDS), dtype=np.uint64)
    recall = np.zeros((len(texts), RECALL_BANDS), dtype=np.uint64)
    sketches = np.zeros((len(texts), SKETCH_WIDTH), dtype=np.uint16)
    for start, stop, signatures in _batch_signatures(texts, ngram, permutations):
        keys[start:stop] = compute_bands(signatures)
        recall[start:stop], sketches[start:stop] = compute_recall_keys(signatures)
    return keys, recall, sketches


class _SpilledRows:
    """Rows (n, width) of one dtype appended to a temporary file and read back as one array, so the batches'
    parts and the whole (what np.concatenate would hold at once) are never in memory together."""

    def __init__(self, width: int, dtype: type) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by read()
        self._width, self._dtype, self._rows = width, np.dtype(dtype), 0

    def append(self, rows: np.ndarray) -> None:
        np.ascontiguousarray(rows, self._dtype).tofile(self._file)
        self._rows += rows.shape[0]

    def read(self) -> np.ndarray:
        self._file.flush()
        self._file.seek(0)
        with self._file:
            return np.fromfile(self._file, self._dtype, self._rows * self._width).reshape(self._rows, self._width)


def _compress(parent: np.ndarray) -> None:
    """Point every node straight at its root (pointer jumping), in place."""
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            return
        parent[:] = grand


def union(parent: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """Join the sets of a[i] and b[i] for every i, in place; the smaller index becomes each set's root.

    Vectorised union-find: hook the larger root under the smaller (np.minimum.at), compress, repeat until
    every pair shares a root. Memory is the parent array plus this batch of pairs, however many batches come.
    """
    _compress(parent)
    while a.size:
        ra, rb = parent[a], parent[b]
        differ = ra != rb
        if not differ.any():
            return
        a, b, ra, rb = a[differ], b[differ], ra[differ], rb[differ]
        np.minimum.at(parent, np.maximum(ra, rb), np.minimum(ra, rb))
        _compress(parent)


def cluster_bands(keys: np.ndarray, active: np.ndarray | None = None) -> np.ndarray:
    """Cluster roots (N,) int64 from band keys (N, B): rows sharing any band key end in one set (single linkage).

    The root of a set is its smallest row index, so ordering rows by priority makes the root the one to keep.
    Rows where `active` (N,) is False, and all-zero rows, join nothing. Streams band by band: memory is
    O(N), the candidate pairs of one band at a time, never the pair list of all bands.
    """
    n, n_bands = keys.shape
    parent = np.arange(n, dtype=np.int64)
    usable = (keys != 0).any(axis=1)
    if active is not None:
        usable &= active
    rows = np.flatnonzero(usable)
    for band in range(n_bands):
        sorted_rows, new_bucket, head = _band_buckets(keys, rows, band)
        joined = ~new_bucket
        union(parent, sorted_rows[joined], head[joined])
    _compress(parent)
    return parent


def _band_buckets(keys: np.ndarray, rows: np.ndarray, band: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`rows` sorted by their key in `band` (stable: ascending within a bucket), whether each opens a bucket,
    and each one's bucket head (its first member)."""
    column = keys[rows, band]
    order = np.argsort(column, kind="stable")
    sorted_keys, sorted_rows = column[order], rows[order]
    new_bucket = np.ones(sorted_keys.size, dtype=bool)
    new_bucket[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return sorted_rows, new_bucket, sorted_rows[np.flatnonzero(new_bucket)[np.cumsum(new_bucket) - 1]]


def _band_pairs(keys: np.ndarray, rows: np.ndarray, band: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs (a, b) of one band among `rows`: each member of a bucket with the bucket's first member
    and with the member before it (rows ascending within a bucket), so a bucket of m rows gives < 2m pairs."""
    sorted_rows, new_bucket, head = _band_buckets(keys, rows, band)
    joined = np.flatnonzero(~new_bucket)
    previous = sorted_rows[joined - 1]
    chained = previous != head[joined]  # the second member's previous one is the head: that pair is there already
    return (
        np.concatenate([sorted_rows[joined], sorted_rows[joined][chained]]),
        np.concatenate([head[joined], previous[chained]]),
    )


def estimate_jaccard(sketches: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Estimated Jaccard (P,) float32 of pairs (a[i], b[i]) of rows of `sketches` (N, K): the share of equal values.

    Compares _PAIRS_PER_BLOCK pairs at a time, so memory stays flat however many pairs come.
    """
    out = np.zeros(a.size, dtype=np.float32)
    for lo in range(0, a.size, _PAIRS_PER_BLOCK):
        hi = lo + _PAIRS_PER_BLOCK
        out[lo:hi] = (sketches[a[lo:hi]] == sketches[b[lo:hi]]).mean(axis=1)
    return out


def cluster_verified(
    keys: np.ndarray, sketches: np.ndarray, threshold: float = VERIFY_THRESHOLD, active: np.ndarray | None = None
) -> np.ndarray:
    """Cluster roots (N,) int64 like `cluster_bands`, but a band collision joins two rows only when their
    estimated Jaccard (`estimate_jaccard` of `sketches`, see `sketch_signatures`) is >= `threshold`.

    Meant for a looser banding (RECALL_BANDS x RECALL_ROWS) than `cluster_bands`: more true pairs become
    candidates, and the check drops the chance collisions that looser banding also brings. Pairs already in
    one set are not checked again. Rows where `active` is False, and all-zero rows, join nothing.
    """
    n, n_bands = keys.shape
    if sketches.shape[0] != n:
        raise ValueError(f"{sketches.shape[0]} sketches for {n} rows of band keys")
    parent = np.arange(n, dtype=np.int64)
    usable = (keys != 0).any(axis=1)
    if active is not None:
        usable &= active
    rows = np.flatnonzero(usable)
    for band in range(n_bands):
        a, b = _band_pairs(keys, rows, band)
        _compress(parent)
        open_pair = parent[a] != parent[b]
        a, b = a[open_pair], b[open_pair]
        close = estimate_jaccard(sketches, a, b) >= threshold
        union(parent, a[close], b[close])
    _compress(parent)
    return parent


def cluster_text_batches(
    batches: Iterable[Sequence[str | None]], ngram: int = NGRAM, verify_threshold: float | None = None
) -> np.ndarray:
    """Near-duplicate cluster roots (N,) int64 of a stream of text batches (root = smallest index in the set).

    Default: `cluster_bands` over 14 x 8 bands, datatrove's FineWeb setting. With `verify_threshold` (use
    VERIFY_THRESHOLD): the higher-recall setting, `cluster_verified` over 20 x 5 bands and 16-bit sketches.
    What the batches leave (112 bytes a text, 384 with the check) goes to a temporary file as it comes and is
    read back once, so memory holds it once: no list of parts beside their concatenation.
    """
    recall = verify_threshold is not None
    keys = _SpilledRows(RECALL_BANDS if recall else BANDS, np.uint64)
    sketches = _SpilledRows(SKETCH_WIDTH, np.uint16) if recall else None
    for batch_keys, batch_sketches in compute_text_bands_batches(batches, ngram, recall=recall):
        keys.append(batch_keys)
        if sketches is not None:
            sketches.append(batch_sketches)
    all_keys = keys.read()
    if sketches is None or verify_threshold is None:
        return cluster_bands(all_keys)
    return cluster_verified(all_keys, sketches.read(), verify_threshold)


def match_bands(keys: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """For each row of `keys` (N, B), a row of `reference` (M, B) sharing a band key with it, or -1.

    The lowest band that matches decides; all-zero rows (no shingles) match nothing. Cost: O((N + M) log M).
    """
    n, n_bands = keys.shape
    found = np.full(n, -1, dtype=np.int64)
    if reference.shape[0] == 0 or n == 0:
        return found
    for band in range(n_bands):
        ref = reference[:, band]
        order = np.argsort(ref, kind="stable")
        ref_sorted = ref[order]
        pos = np.searchsorted(ref_sorted, keys[:, band])
        pos = np.minimum(pos, ref_sorted.size - 1)
        hit = (ref_sorted[pos] == keys[:, band]) & (keys[:, band] != 0) & (found < 0)
        found[hit] = order[pos[hit]]
    return found

"""Hashed n-gram features of text records: what the text model reads and the cold start embeds, no vocabulary."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

# fastText's recipe (Joulin et al. 2017, "Bag of Tricks for Efficient Text Classification"): word 1-2 grams
# hashed into buckets, plus character 3-5 grams as in fastText's subword vectors (Bojanowski et al. 2017), so
# inflections and typos share features. 2^18 buckets per family keeps collisions rare for pages of a few
# thousand words while a (2^19, hidden) first layer stays a few tens of MB.
WORD_NGRAMS = (1, 2)
CHAR_NGRAMS = (3, 5)
HASH_BITS = 18
# The cold-start projection: 64 LSA dimensions (Deerwester et al. 1990; scikit-learn's TruncatedSVD over
# TF-IDF) is enough to separate a handful of topics and keeps k-means and k-center cheap.
SVD_COMPONENTS = 64
EMBEDDING_SOURCE = "tfidf-svd"


def _vectorizers(bits: int) -> tuple[HashingVectorizer, HashingVectorizer]:
    common = {"n_features": 2**bits, "alternate_sign": False, "norm": None, "lowercase": True}
    words = HashingVectorizer(analyzer="word", ngram_range=WORD_NGRAMS, **common)
    chars = HashingVectorizer(analyzer="char_wb", ngram_range=CHAR_NGRAMS, **common)
    return words, chars


def document_of(title: str | None, text: str | None) -> str:
    """The string a text record is read as: its title, then its text (either may be missing)."""
    return "\n".join(part for part in (title, text) if part)


def documents_of(table: pa.Table) -> list[str]:
    """document_of each row of a table with `text` (and, where present, `title`) columns."""
    if "text" not in table.column_names:
        raise ValueError(f"table lacks column text (has {table.column_names})")
    texts = table.column("text").to_pylist()
    titles = table.column("title").to_pylist() if "title" in table.column_names else [None] * len(texts)
    return [document_of(title, text) for title, text in zip(titles, texts, strict=True)]


def hash_text_features(documents: list[str], *, bits: int = HASH_BITS) -> sp.csr_matrix:
    """(N, 2 * 2**bits) sparse counts: word 1-2 grams in the first half, character 3-5 grams in the second,
    each half L2-normalised per row (sublinear counts) so a long page does not outweigh a short one."""
    words, chars = _vectorizers(bits)
    halves = []
    for vectorizer in (words, chars):
        counts = vectorizer.transform(documents).astype(np.float32)
        counts.data = 1.0 + np.log(counts.data)
        norms = np.sqrt(np.asarray(counts.multiply(counts).sum(axis=1)).ravel())
        halves.append(sp.diags(1.0 / np.where(norms > 0, norms, 1.0)).dot(counts))
    return sp.hstack(halves, format="csr", dtype=np.float32)


def compute_text_embeddings(documents: list[str], *, components: int = SVD_COMPONENTS, seed: int = 0) -> np.ndarray:
    """(N, D) L2-normalised LSA embeddings of `documents` without a model: TF-IDF over the hashed n-grams,
    projected by TruncatedSVD onto min(components, N - 1) dimensions (raw TF-IDF rows when N < 3)."""
    if not documents:
        return np.zeros((0, components), np.float32)
    tfidf = TfidfTransformer(sublinear_tf=True).fit_transform(hash_text_features(documents))
    dims = min(components, len(documents) - 1, tfidf.shape[1] - 1)
    projection = TruncatedSVD(n_components=dims, random_state=seed) if dims >= 2 else None
    dense = projection.fit_transform(tfidf) if projection else tfidf.toarray()
    norms = np.linalg.norm(dense, axis=1, keepdims=True)
    return (dense / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def text_embedding_table(records: pa.Table, *, seed: int = 0) -> pa.Table:
    """(record_id, embedding) of the text rows of `records`, named `tfidf-svd` in the schema metadata key
    `flywheel.encoder` (labeling.rounds reads the space's name from it)."""
    texts = records
    if "kind" in records.column_names:
        texts = records.filter(pc.fill_null(pc.equal(records.column("kind"), "text"), False))
    embeddings = compute_text_embeddings(documents_of(texts), seed=seed)
    table = pa.table(
        {
            "record_id": texts.column("record_id"),
            "embedding": pa.array(embeddings.tolist(), pa.list_(pa.float32())),
        }
    )
    return table.replace_schema_metadata({"flywheel.encoder": EMBEDDING_SOURCE})

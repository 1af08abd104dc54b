"""The text classifier: hashed word and character n-grams summed into an embedding, then a linear head (fastText).

Joulin et al. 2017 ("Bag of Tricks for Efficient Text Classification"): a text is the weighted sum of its
n-grams' embeddings; one linear layer classifies it. No vocabulary and no pretrained weights, so nothing is
downloaded and a new release trains in seconds on a CPU. The sum is also the embedding active learning
measures diversity in (the model's hidden layer).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
import torch
from torch import nn

from corpus.text_features import documents_of, hash_text_features

ARCH = "HashedNgramClassifier"
# 2 x 2^16 buckets x 32 dims = 4.2 M weights (17 MB per model version). fastText's default of 2 M buckets x 100
# dims is sized for corpora of millions of documents; a release of thousands of pages fills few buckets.
MODEL_HASH_BITS = 16
EMBEDDING_DIM = 32


class HashedNgramClassifier(nn.Module):
    """(indices, offsets, weights) of hashed n-gram rows -> class logits; `embed` is the n-gram sum (N, dim)."""

    def __init__(self, num_classes: int, *, hash_bits: int = MODEL_HASH_BITS, dim: int = EMBEDDING_DIM) -> None:
        super().__init__()
        self.hash_bits = hash_bits
        self.embedding_dim = dim
        # sparse=True: a batch touches a few thousand of the 131,072 rows; only those get a gradient.
        self.bag = nn.EmbeddingBag(2 * 2**hash_bits, dim, mode="sum", sparse=True)
        self.head = nn.Linear(dim, num_classes)
        nn.init.normal_(self.bag.weight, std=0.1)

    def embed(self, indices: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self.bag(indices, offsets, per_sample_weights=weights)

    def forward(self, indices: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(indices, offsets, weights))


def build_text_model(arch: dict) -> HashedNgramClassifier:
    """An untrained classifier with the shape a model's metadata records ("model": num_classes, hash_bits, dim)."""
    return HashedNgramClassifier(arch["num_classes"], hash_bits=arch["hash_bits"], dim=arch["dim"])


def featurize(table: pa.Table, hash_bits: int = MODEL_HASH_BITS) -> sp.csr_matrix:
    """The model's input rows of a table of text records (title and text): corpus.text_features' hashed n-grams."""
    return hash_text_features(documents_of(table), bits=hash_bits)


def to_bag_inputs(rows: sp.csr_matrix, device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
    """(indices, offsets, weights) of CSR rows, the EmbeddingBag's input for one batch."""
    rows = rows.tocsr()
    indices = torch.from_numpy(rows.indices.astype(np.int64))
    offsets = torch.from_numpy(rows.indptr[:-1].astype(np.int64))
    weights = torch.from_numpy(rows.data.astype(np.float32))
    return indices.to(device), offsets.to(device), weights.to(device)


def compute_text_probs(
    model: HashedNgramClassifier, rows: sp.csr_matrix, *, batch_size: int = 256, device: str | torch.device = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """(probs (N, K), embeddings (N, dim)) of feature rows under `model`, in eval mode; writes nothing."""
    was_training = model.training
    model.to(device).eval()
    probs, embeddings = [], []
    with torch.no_grad():
        for start in range(0, rows.shape[0], batch_size):
            emb = model.embed(*to_bag_inputs(rows[start : start + batch_size], device))
            probs.append(torch.softmax(model.head(emb), dim=1).cpu().numpy())
            embeddings.append(emb.cpu().numpy())
    model.train(was_training)
    k = model.head.out_features
    if not probs:
        return np.zeros((0, k), np.float32), np.zeros((0, model.embedding_dim), np.float32)
    return np.concatenate(probs).astype(np.float32), np.concatenate(embeddings).astype(np.float32)


def predict_text_rows(
    model: HashedNgramClassifier, pool: pa.Table, *, device: str | torch.device = "cpu"
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(record_ids, probs (N, K), embeddings (N, dim)) of the text rows of `pool`, each record once."""
    kinds = pool.column("kind").to_pylist() if "kind" in pool.column_names else ["text"] * pool.num_rows
    seen: set[str] = set()
    keep = []
    texts = pool.column("text").to_pylist()
    for rid, kind, text in zip(pool.column("record_id").to_pylist(), kinds, texts, strict=True):
        keep.append(kind == "text" and text is not None and rid not in seen)
        seen.add(rid)
    rows = pool.filter(pa.array(keep, pa.bool_()))
    probs, embeddings = compute_text_probs(model, featurize(rows, model.hash_bits), device=device)
    return rows.column("record_id").to_pylist(), probs, embeddings

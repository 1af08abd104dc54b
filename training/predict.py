"""Prediction over the unlabeled pool: class probabilities and embeddings for active learning."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import DataLoader

from corpus.schema import PREDICTION_SCHEMA
from corpus.store import DataRoot
from training.augment import build_transforms, get_recipe
from training.data import PoolImageDataset
from training.devices import pick_device, pick_memory_format, pick_precision
from training.registry import load_model, write_predictions


def eval_transform(meta: dict) -> Callable:
    """The eval pipeline a model was trained with: the recorded recipe transforms, else the named recipe."""
    size = meta["image_size"]
    recorded = (meta.get("augmentation") or {}).get("eval_transforms")
    if recorded:
        return build_transforms(recorded, size)
    return get_recipe(meta.get("eval_recipe") or "eval", size)


def _channels_last_preference(meta: dict) -> str:
    """The model's channels_last setting (auto / on / off; True/False in older metadata), applied to the device
    that predicts now, which need not be the one that trained."""
    pref = (meta.get("config") or {}).get("channels_last", "auto")
    return ("on" if pref else "off") if isinstance(pref, bool) else pref


def compute_probs(
    model: torch.nn.Module, meta: dict, records: pa.Table, *, batch_size: int = 64, device: str = "auto"
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(record_ids, probs (N, K) in meta["labels"] order, embeddings (N, D)) of the image rows of `records`
    under `model` with the eval transforms its metadata records; writes nothing."""
    dev = pick_device(device)
    amp_dtype = pick_precision(dev, "auto")
    memory_format = pick_memory_format(dev, _channels_last_preference(meta))
    model.to(dev, memory_format=memory_format)
    was_training = model.training
    model.eval()
    ds = PoolImageDataset(records, eval_transform(meta))
    probs_out: list[np.ndarray] = []
    emb_out: list[np.ndarray] = []
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, pin_memory=dev.type == "cuda")
    autocast = torch.autocast(dev.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None)
    with torch.no_grad(), autocast:
        for x, _ in loader:
            emb = model.embed(x.to(dev, non_blocking=True, memory_format=memory_format))
            probs = torch.softmax(model.head(emb).float(), dim=1)
            probs_out.append(probs.float().cpu().numpy())
            emb_out.append(emb.float().cpu().numpy())
    model.train(was_training)
    k, d = len(meta["labels"]), model.embedding_dim
    probs_np = np.concatenate(probs_out) if probs_out else np.zeros((0, k), np.float32)
    emb_np = np.concatenate(emb_out) if emb_out else np.zeros((0, d), np.float32)
    return ds.record_ids, probs_np, emb_np


def predict_pool(
    root: DataRoot, model_version: str, pool: pa.Table, *, batch_size: int = 64, device: str = "auto"
) -> pa.Table:
    """Score the image rows of `pool` with a trained model (PREDICTION_SCHEMA), also written to its folder.

    `confidence` is the top softmax probability: low means the model is unsure (label it first);
    `probs` follow the model's label order (metrics.json "labels"); `embedding` is the pooled features.
    A row whose image cannot be decoded raises ImageDecodeError naming its record_id.
    """
    model, meta = load_model(root, model_version)
    labels: list[str] = meta["labels"]
    record_ids, probs_np, emb_np = compute_probs(model, meta, pool, batch_size=batch_size, device=device)
    k, d = len(labels), model.embedding_dim
    top = probs_np.argmax(1) if len(probs_np) else np.zeros(0, np.int64)
    table = pa.Table.from_arrays(
        [
            pa.array(record_ids, pa.string()),
            pa.array([labels[i] for i in top], pa.string()),
            pa.array(probs_np.max(1) if len(probs_np) else np.zeros(0), pa.float32()),
            pa.FixedSizeListArray.from_arrays(pa.array(probs_np.reshape(-1), pa.float32()), k).cast(
                pa.list_(pa.float32())
            ),
            pa.FixedSizeListArray.from_arrays(pa.array(emb_np.reshape(-1), pa.float32()), d).cast(
                pa.list_(pa.float32())
            ),
            pa.nulls(len(record_ids), PREDICTION_SCHEMA.field("boxes").type),  # a classifier predicts no boxes
        ],
        schema=PREDICTION_SCHEMA,
    )
    write_predictions(root, model_version, table)
    return table

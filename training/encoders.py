"""The encoder registry: self-supervised backbones pretrained on a pool, in encoders/<version>/ beside models/.

A version folder holds encoder.pt (the backbone's state dict), embeddings.parquet (record_id, embedding: the
pool it was trained on, L2-normalised) and encoder.json (method, epochs, pool and its digest, the config, the
loss per epoch), written last: the registry counts an encoder complete once encoder.json exists.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torch import nn

from corpus.store import DataRoot
from training.backbones import create_model
from training.data import image_rows
from training.loop import to_bytes
from training.registry import artefact_path, list_complete, read_marker
from training.simclr import SimCLRConfig, embed_images, pretrain_simclr

ENCODERS_DIR = "encoders"
WEIGHTS_FILE = "encoder.pt"
EMBEDDINGS_FILE = "embeddings.parquet"
METADATA_FILE = "encoder.json"
EMBEDDING_SCHEMA = pa.schema([("record_id", pa.string()), ("embedding", pa.list_(pa.float32()))])


def encoder_path(version: str, name: str = "") -> str:
    """The path (relative to the data root) of encoder `version`'s folder, or of file `name` in it."""
    return artefact_path(ENCODERS_DIR, version, name, "encoder")


def list_encoders(root: DataRoot) -> list[str]:
    """Versions of every complete encoder (one with encoder.json), sorted by name."""
    return list_complete(root, ENCODERS_DIR, METADATA_FILE)


def read_encoder_metadata(root: DataRoot, version: str) -> dict[str, Any]:
    """encoder.json of an encoder; FileNotFoundError lists the encoders that exist."""
    return read_marker(root, ENCODERS_DIR, METADATA_FILE, version, "encoder")


def latest_encoder(root: DataRoot) -> str | None:
    """The most recently pretrained encoder, or None when there is none."""
    found = [(read_encoder_metadata(root, n).get("created_at", ""), n) for n in list_encoders(root)]
    return max(found)[1] if found else None


def read_embeddings(root: DataRoot, version: str) -> pa.Table:
    """The pool embeddings an encoder wrote (EMBEDDING_SCHEMA), its version under the schema metadata key
    `flywheel.encoder` (what a round plan records as its embeddings' source)."""
    read_encoder_metadata(root, version)
    table = root.read_table(encoder_path(version, EMBEDDINGS_FILE), schema=None)
    return table.replace_schema_metadata({"flywheel.encoder": version})


def newest_embeddings(root: DataRoot) -> tuple[str | None, pa.Table | None]:
    """(the newest encoder, its pool embeddings); (None, None) when no encoder was pretrained."""
    version = latest_encoder(root)
    return (version, read_embeddings(root, version)) if version else (None, None)


def load_encoder(root: DataRoot, version: str) -> tuple[nn.Module, dict[str, Any]]:
    """The pretrained backbone (eval mode, on CPU; weights_only load) and its metadata."""
    meta = read_encoder_metadata(root, version)
    cfg = SimCLRConfig(**meta["config"])
    backbone = create_model(cfg.backbone, 1, width=cfg.width, dropout=0.0)
    state = torch.load(io.BytesIO(root.read_bytes(encoder_path(version, WEIGHTS_FILE))), weights_only=True)
    backbone.load_state_dict(state)
    return backbone.eval(), meta


def compute_pool_digest(record_ids: list[str]) -> str:
    """sha256 over the sorted, distinct record ids (content hashes): the same images give the same digest."""
    return hashlib.sha256("\n".join(sorted(set(record_ids))).encode()).hexdigest()


def embeddings_table(record_ids: list[str], embeddings: np.ndarray) -> pa.Table:
    """(record_id, embedding) rows of `embeddings` (N, D) float32, in EMBEDDING_SCHEMA."""
    flat = pa.array(np.asarray(embeddings, np.float32).reshape(-1), pa.float32())
    lists = pa.FixedSizeListArray.from_arrays(flat, embeddings.shape[1]).cast(pa.list_(pa.float32()))
    return pa.Table.from_arrays([pa.array(record_ids, pa.string()), lists], schema=EMBEDDING_SCHEMA)


def _distinct_images(pool: pa.Table) -> tuple[list[str], list[bytes]]:
    images = image_rows(pool)
    images = images.filter(pc.is_valid(images.column("image")))
    ids, seen, data = [], set(), []
    for rid, blob in zip(images.column("record_id").to_pylist(), images.column("image").to_pylist(), strict=True):
        if rid not in seen:
            seen.add(rid)
            ids.append(rid)
            data.append(blob)
    return ids, data


def _next_version(root: DataRoot, method: str) -> str:
    pattern = re.compile(re.escape(method) + r"-(\d+)$")
    taken = [int(m.group(1)) for n in root.taken_names(ENCODERS_DIR) if (m := pattern.match(n))]
    return f"{method}-{max(taken, default=0) + 1:04d}"


def pretrain_pool_encoder(
    root: DataRoot,
    pool: pa.Table,
    *,
    pool_path: str | None = None,
    cfg: SimCLRConfig | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Pretrain an encoder with SimCLR on the image records of `pool` (each record once), embed them, and
    publish encoders/simclr-NNNN/; returns its metadata (with "encoder_version")."""
    cfg = cfg or SimCLRConfig()
    ids, data = _distinct_images(pool)
    backbone, _, report = pretrain_simclr(data, ids, cfg, on_epoch)
    embeddings = embed_images(backbone, data, ids, image_size=cfg.image_size, device=cfg.device)
    buf = io.BytesIO()
    pq.write_table(embeddings_table(ids, embeddings), buf)
    meta = {
        "method": "simclr",
        "citation": "Chen et al. 2020, A Simple Framework for Contrastive Learning of Visual Representations",
        "epochs": cfg.epochs,
        "config": cfg.model_dump(),
        "pool": pool_path,
        "pool_digest": compute_pool_digest(ids),
        "n_images": len(ids),
        "embedding_dim": int(embeddings.shape[1]),
        **report,
        "created_at": datetime.now(UTC).isoformat(timespec="microseconds"),
    }
    weights = to_bytes({k: v.detach().cpu() for k, v in backbone.state_dict().items()})
    for _ in range(20):
        version = _next_version(root, "simclr")
        meta["encoder_version"] = version
        files = {
            WEIGHTS_FILE: weights,
            EMBEDDINGS_FILE: buf.getvalue(),
            METADATA_FILE: json.dumps(meta, indent=2, sort_keys=True, default=str).encode(),
        }
        try:
            root.publish_folder(encoder_path(version), files, METADATA_FILE, read_only=False)
            return meta
        except FileExistsError:
            continue  # another pretraining run took this version first
    raise RuntimeError(f"could not find a free encoder version among {list_encoders(root)}")

"""Detection over images and the unlabeled pool: scored boxes, an image-level confidence and embeddings per record."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import torch
from torch import nn
from torch.utils.data import DataLoader

from corpus.boxes import BOXES_TYPE, BoxSet, build_boxes, make_box_set, xyxy_to_xywh
from corpus.schema import PREDICTION_SCHEMA
from corpus.store import DataRoot
from training.augment import build_transforms
from training.box_augment import BOX_RECIPES
from training.box_data import PoolBoxImages
from training.detector import Detections, decode_detections, scale_detections
from training.devices import pick_device, pick_precision
from training.registry import load_model, write_predictions

# Boxes kept in a model's pool predictions: scores >= 0.05, torchvision's detectors' default box_score_thresh,
# so doubtful peaks (what selection looks for) stay while the near-zero rest of the top 100 is dropped.
PREDICTION_MIN_SCORE = 0.05
EVAL_RECIPE = "boxes-eval"


def eval_box_transform(meta: dict) -> Callable:
    """The eval pipeline (resize to the model's input, normalise) a detector was trained with: its recorded
    entries, else the named box recipe. Boxes are not transformed: found boxes are scaled back instead."""
    recorded = (meta.get("augmentation") or {}).get("eval_transforms")
    return build_transforms(recorded or BOX_RECIPES[EVAL_RECIPE], meta["image_size"])


@torch.no_grad()
def detect_records(
    model: nn.Module,
    records: pa.Table,
    transform: Callable,
    input_size: int,
    *,
    batch_size: int = 64,
    device: str | torch.device = "auto",
) -> tuple[list[str], list[Detections], list[tuple[int, int]], np.ndarray]:
    """(record_ids, each image's top-k detections in its own pixels, its (width, height), pooled embeddings
    (N, D)) of the image rows of `records` under a CenterNet; writes nothing, leaves the model's mode as it was."""
    dev = device if isinstance(device, torch.device) else pick_device(device)
    amp_dtype = pick_precision(dev, "auto")
    was_training = model.training
    model.to(dev).eval()
    ds = PoolBoxImages(records, transform)
    found: list[Detections] = []
    image_sizes: list[tuple[int, int]] = []
    embeddings: list[np.ndarray] = []
    autocast = torch.autocast(dev.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None)
    for x, sizes in DataLoader(ds, batch_size=batch_size, shuffle=False, pin_memory=dev.type == "cuda"):
        with autocast:
            outputs, emb = model.forward_with_embedding(x.to(dev, non_blocking=True))
        for d, (w, h) in zip(decode_detections(*outputs), sizes.tolist(), strict=True):
            found.append(scale_detections(d, w, h, input_size))
            image_sizes.append((w, h))
        embeddings.append(emb.float().cpu().numpy())
    model.train(was_training)
    dim = model.embedding_dim
    stacked = np.concatenate(embeddings) if embeddings else np.zeros((0, dim), np.float32)
    return ds.record_ids, found, image_sizes, stacked


def to_box_sets(found: Sequence[Detections], labels: Sequence[str]) -> list[BoxSet]:
    """Detections as BoxSets (label names instead of class indices), the form training.box_evaluation takes."""
    return [make_box_set(d.xyxy, [labels[int(c)] for c in d.classes], d.scores) for d in found]


def image_confidence(scores: np.ndarray) -> float:
    """How sure a detector is of one image, in [0, 1] (low = unsure: label it first): 1 - the largest per-box
    uncertainty 1 - |2s - 1| of its peaks (Brust et al. 2018's max aggregation); 1 for an image with none."""
    scores = np.asarray(scores, np.float64)
    return float(np.min(np.abs(2 * scores - 1))) if len(scores) else 1.0


def _box_rows(d: Detections, labels: Sequence[str], width: int, height: int, min_score: float) -> list[dict]:
    keep = d.scores >= min_score
    names = [labels[int(c)] for c in d.classes[keep]]
    return build_boxes(xyxy_to_xywh(d.xyxy[keep]), names, width, height, scores=d.scores[keep].tolist())


def build_box_predictions(
    record_ids: Sequence[str],
    found: Sequence[Detections],
    sizes: Sequence[tuple[int, int]],
    embeddings: np.ndarray,
    labels: Sequence[str],
    *,
    min_score: float = PREDICTION_MIN_SCORE,
) -> pa.Table:
    """PREDICTION_SCHEMA rows of a detector's findings: `boxes` those scoring >= min_score (best first, each
    with its score), `predicted_label` the best box's label (null without one), `confidence` image_confidence
    of the kept boxes, `probs` null (no class distribution per image), `embedding` the pooled features.
    `sizes` are the images' (width, height) the boxes are in."""
    rows = [_box_rows(d, labels, w, h, min_score) for d, (w, h) in zip(found, sizes, strict=True)]
    best = [boxes[0]["label"] if boxes else None for boxes in rows]
    confidence = [image_confidence(np.array([b["score"] for b in boxes])) for boxes in rows]
    dim = embeddings.shape[1] if embeddings.ndim == 2 else 0
    flat = pa.array(np.asarray(embeddings, np.float32).reshape(-1), pa.float32())
    return pa.Table.from_arrays(
        [
            pa.array(list(record_ids), pa.string()),
            pa.array(best, pa.string()),
            pa.array(confidence, pa.float32()),
            pa.nulls(len(rows), pa.list_(pa.float32())),
            pa.FixedSizeListArray.from_arrays(flat, dim).cast(pa.list_(pa.float32())),
            pa.array(rows, BOXES_TYPE),
        ],
        schema=PREDICTION_SCHEMA,
    )


def predict_box_pool(
    root: DataRoot, model_version: str, pool: pa.Table, *, batch_size: int = 64, device: str = "auto"
) -> pa.Table:
    """Detect in the image rows of `pool` with a trained detector (build_box_predictions' table), also written
    to the model's folder. A row whose image cannot be decoded raises ImageDecodeError naming its record_id."""
    model, meta = load_model(root, model_version)
    transform = eval_box_transform(meta)
    ids, found, sizes, embeddings = detect_records(
        model, pool, transform, meta["image_size"], batch_size=batch_size, device=device
    )
    table = build_box_predictions(ids, found, sizes, embeddings, meta["labels"])
    write_predictions(root, model_version, table)
    return table

"""The model registry: trained models under models/<model_version>/ (state_dict, metrics.json, report.md)."""

from __future__ import annotations

import io
import posixpath
from typing import Any

import torch

from corpus.store import DataRoot
from training.model import SmallCNN

MODELS_DIR = "models"
WEIGHTS_FILE = "model.pt"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"


def list_models(root: DataRoot) -> list[str]:
    """Versions of every complete model (one with metrics.json), sorted by name."""
    names = [n for n in root.list_dirs(MODELS_DIR) if not n.startswith(".")]
    return [n for n in names if root.exists(posixpath.join(MODELS_DIR, n, METRICS_FILE))]


def read_metadata(root: DataRoot, model_version: str) -> dict[str, Any]:
    """metrics.json of a model; FileNotFoundError lists the models that exist."""
    path = posixpath.join(MODELS_DIR, model_version, METRICS_FILE)
    if not root.exists(path):
        known = list_models(root)
        raise FileNotFoundError(f"model {model_version!r} not found; models: {', '.join(known) or 'none'}")
    return root.read_json(path)


def latest_model(root: DataRoot, dataset: str | None = None) -> str | None:
    """The most recently trained model (of `dataset`, when given), or None when there is none."""
    found = []
    for name in list_models(root):
        meta = root.read_json(posixpath.join(MODELS_DIR, name, METRICS_FILE))
        if dataset is None or meta.get("dataset") == dataset:
            found.append((meta.get("created_at", ""), name))
    return max(found)[1] if found else None


def build_model(meta: dict[str, Any]) -> SmallCNN:
    """An untrained model with the architecture recorded in a model's metadata."""
    arch = meta["model"]
    if arch.get("arch") != "SmallCNN":
        raise ValueError(f"unknown architecture {arch.get('arch')!r}")
    return SmallCNN(num_classes=arch["num_classes"], width=arch["width"], dropout=arch.get("dropout", 0.2))


def load_model(root: DataRoot, model_version: str) -> tuple[SmallCNN, dict[str, Any]]:
    """The trained model (eval mode, on CPU) and its metadata; weights are loaded with weights_only=True."""
    meta = read_metadata(root, model_version)
    model = build_model(meta)
    data = root.read_bytes(posixpath.join(MODELS_DIR, model_version, WEIGHTS_FILE))
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.eval()
    return model, meta

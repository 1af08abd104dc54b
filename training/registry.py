"""The model registry: the layout of models/<model_version>/ (weights, metrics, report, predictions, label issues)."""

from __future__ import annotations

import io
import posixpath
from typing import Any

import pyarrow as pa
import torch
from torch import nn

from corpus.store import DataRoot
from training.backbones import LAYOUTS, create_model
from training.detector import ARCH as DETECTOR_ARCH
from training.detector import CenterNet

MODELS_DIR = "models"
WEIGHTS_FILE = "model.pt"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
# Written after training, by prediction over the pool and by the label-error check.
PREDICTIONS_FILE = "predictions.parquet"
LABEL_ISSUES_FILE = "label_issues.parquet"


def artefact_path(kind_dir: str, version: str, name: str = "", kind: str = "model") -> str:
    """The path (relative to the data root) of `kind_dir`/`version`'s folder, or of file `name` in it."""
    if not version or "/" in version or version.startswith("."):
        raise ValueError(f"bad {kind} version {version!r}: use a plain folder name")
    return posixpath.join(kind_dir, version, name) if name else posixpath.join(kind_dir, version)


def list_complete(root: DataRoot, kind_dir: str, marker: str) -> list[str]:
    """Versions under `kind_dir` whose `marker` file exists (it is written last), sorted by name."""
    names = [n for n in root.list_dirs(kind_dir) if not n.startswith(".")]
    return [n for n in names if root.exists(posixpath.join(kind_dir, n, marker))]


def read_marker(root: DataRoot, kind_dir: str, marker: str, version: str, kind: str) -> dict[str, Any]:
    """The `marker` JSON of `kind_dir`/`version`; FileNotFoundError lists the versions that exist."""
    path = artefact_path(kind_dir, version, marker, kind)
    if not root.exists(path):
        known = list_complete(root, kind_dir, marker)
        raise FileNotFoundError(f"{kind} {version!r} not found; {kind}s: {', '.join(known) or 'none'}")
    return root.read_json(path)


def model_path(model_version: str, name: str = "") -> str:
    """The path (relative to the data root) of model `model_version`'s folder, or of file `name` in it."""
    return artefact_path(MODELS_DIR, model_version, name)


def list_models(root: DataRoot) -> list[str]:
    """Versions of every complete model (one with metrics.json), sorted by name."""
    return list_complete(root, MODELS_DIR, METRICS_FILE)


def read_metadata(root: DataRoot, model_version: str) -> dict[str, Any]:
    """metrics.json of a model; FileNotFoundError lists the models that exist."""
    return read_marker(root, MODELS_DIR, METRICS_FILE, model_version, "model")


def latest_model(root: DataRoot, dataset: str | None = None) -> str | None:
    """The most recently trained model (of `dataset`, when given), or None when there is none."""
    found = []
    for name in list_models(root):
        meta = root.read_json(model_path(name, METRICS_FILE))
        if dataset is None or meta.get("dataset") == dataset:
            found.append((meta.get("created_at", ""), name))
    return max(found)[1] if found else None


def build_model(meta: dict[str, Any]) -> nn.Module:
    """An untrained model with the architecture recorded in a model's metadata: "SmallCNN" (with its width
    and dropout), a ResNet ("resnet18", "resnet34", "resnet50") or a detector ("CenterNet" on its backbone)."""
    arch = meta["model"]
    name = arch.get("arch")
    if name == DETECTOR_ARCH:
        channels = arch["neck_channels"]
        return CenterNet(arch["backbone"], arch["num_classes"], width=arch["width"], neck_channels=channels)
    if name == "SmallCNN":
        return create_model("small-cnn", arch["num_classes"], width=arch["width"], dropout=arch.get("dropout", 0.2))
    if name in LAYOUTS:
        return create_model(name, arch["num_classes"])
    raise ValueError(f"unknown architecture {name!r}; known: SmallCNN, {', '.join(LAYOUTS)}, {DETECTOR_ARCH}")


def load_model(root: DataRoot, model_version: str) -> tuple[nn.Module, dict[str, Any]]:
    """The trained model (eval mode, on CPU) and its metadata; weights are loaded with weights_only=True."""
    meta = read_metadata(root, model_version)
    model = build_model(meta)
    data = root.read_bytes(model_path(model_version, WEIGHTS_FILE))
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.eval()
    return model, meta


def _write_beside(root: DataRoot, model_version: str, name: str, table: pa.Table) -> None:
    """Write `table` as file `name` of a complete model; FileNotFoundError (listing the models) otherwise,
    so a typo never starts a stray folder that the registry would not list."""
    read_metadata(root, model_version)
    root.write_table(model_path(model_version, name), table)


def _read_beside(root: DataRoot, model_version: str, name: str) -> pa.Table | None:
    path = model_path(model_version, name)
    return root.read_table(path, schema=None) if root.exists(path) else None


def write_predictions(root: DataRoot, model_version: str, table: pa.Table) -> None:
    """Store a model's predictions over the pool (PREDICTION_SCHEMA), replacing earlier ones."""
    _write_beside(root, model_version, PREDICTIONS_FILE, table)


def read_predictions(root: DataRoot, model_version: str) -> pa.Table | None:
    """A model's stored predictions, or None when it has made none."""
    return _read_beside(root, model_version, PREDICTIONS_FILE)


def write_label_issues(root: DataRoot, model_version: str, table: pa.Table) -> None:
    """Store the records a model flags as likely mislabeled (one row each, with a record_id)."""
    _write_beside(root, model_version, LABEL_ISSUES_FILE, table)


def read_label_issues(root: DataRoot, model_version: str) -> pa.Table | None:
    """The records a model flagged as likely mislabeled, or None when it has no label-error check."""
    return _read_beside(root, model_version, LABEL_ISSUES_FILE)


def newest_predictions(root: DataRoot, dataset: str) -> tuple[str | None, pa.Table | None]:
    """(the newest model of `dataset`, its predictions); (None, None) when there is no model or the newest
    one has no predictions yet (an older model's would rank the pool with stale knowledge)."""
    model_version = latest_model(root, dataset)
    predictions = read_predictions(root, model_version) if model_version else None
    return (model_version, predictions) if predictions is not None else (None, None)

"""The train loop: fit a SmallCNN on a verified release, keep the best val checkpoint, report test metrics."""

from __future__ import annotations

import copy
import io
import os
import posixpath
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from pydantic import BaseModel, Field
from torch import nn
from torch.utils.data import DataLoader

from corpus.releases import load_release
from corpus.store import DataRoot
from training.augment import get_recipe
from training.data import ReleaseImageDataset, image_rows
from training.model import SmallCNN
from training.registry import METRICS_FILE, MODELS_DIR, WEIGHTS_FILE, list_models


class TrainConfig(BaseModel):
    """How a model is trained."""

    image_size: int = Field(64, ge=8, description="Side of the square input, in pixels.")
    epochs: int = Field(30, ge=1, description="Most epochs to run.")
    batch_size: int = Field(32, ge=1)
    # 3e-3 with AdamW suits a small BN CNN from scratch (measured on the synthetic test set; 1e-3 is slower).
    lr: float = Field(3e-3, gt=0, description="AdamW learning rate (cosine-annealed to 0).")
    # torch.optim.AdamW's own default.
    weight_decay: float = Field(1e-2, ge=0)
    width: int = Field(32, ge=4, description="Channels of the first SmallCNN block.")
    dropout: float = Field(0.2, ge=0, lt=1)
    recipe: str = Field("train-basic", description="Augmentation recipe for training (training.augment).")
    eval_recipe: str = Field("eval", description="Recipe for val, test and prediction.")
    seed: int = 0
    # Early stopping patience: a common default (Keras examples use 5-10) for runs of ~30 epochs.
    patience: int = Field(8, ge=1, description="Stop after this many epochs without a better val accuracy.")
    num_workers: int = Field(0, ge=0, description="DataLoader workers; 0 decodes in the main process.")
    device: str = Field("auto", description="'auto' (cuda if available), 'cpu', 'cuda' or 'cuda:N'.")


def pick_device(pref: str = "auto") -> torch.device:
    """The torch device to run on: CUDA when available for 'auto', else CPU; an explicit choice is checked."""
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(pref)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {pref!r} asked for but CUDA is not available")
    return device


def _known_labels(table: pa.Table, labels: list[str]) -> tuple[pa.Table, int]:
    """Rows whose label the model knows, and how many were left out (labels absent from train)."""
    mask = pc.fill_null(pc.is_in(table.column("label"), pa.array(labels, pa.string())), False)
    kept = table.filter(mask)
    return kept, table.num_rows - kept.num_rows


def _loader(ds: ReleaseImageDataset, cfg: TrainConfig, shuffle: bool, generator: torch.Generator | None) -> DataLoader:
    return DataLoader(
        ds,
        batch_size=cfg.batch_size,
        shuffle=shuffle,
        num_workers=cfg.num_workers,
        generator=generator,
        pin_memory=False,
    )


@torch.no_grad()
def _evaluate(model: nn.Module, loader: DataLoader, num_classes: int, device: torch.device) -> tuple[np.ndarray, float]:
    """Confusion matrix (true, predicted) and mean cross-entropy of `model` over `loader`."""
    model.eval()
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    loss_sum, n = 0.0, 0
    for x, y in loader:
        logits = model(x.to(device))
        loss_sum += nn.functional.cross_entropy(logits, y.to(device), reduction="sum").item()
        n += len(y)
        np.add.at(cm, (y.numpy(), logits.argmax(1).cpu().numpy()), 1)
    return cm, loss_sum / max(n, 1)


def _accuracy(cm: np.ndarray) -> float | None:
    total = int(cm.sum())
    return float(np.trace(cm) / total) if total else None


def _next_model_version(root: DataRoot, dataset: str, version: str) -> str:
    prefix = f"{dataset}-{version}-m"
    pattern = re.compile(re.escape(prefix) + r"(\d+)$")
    taken = [int(m.group(1)) for n in root.list_dirs(MODELS_DIR) if (m := pattern.match(n))]
    return f"{prefix}{max(taken, default=0) + 1:03d}"


def _publish(root: DataRoot, dataset: str, version: str, weights: bytes, metrics: dict[str, Any]) -> dict[str, Any]:
    """Write weights + metrics under a temp folder and move it to the next free model version."""
    for _ in range(20):
        model_version = _next_model_version(root, dataset, version)
        metrics = {**metrics, "model_version": model_version}
        tmp = posixpath.join(MODELS_DIR, f".tmp-{uuid.uuid4().hex}")
        root.write_bytes(posixpath.join(tmp, WEIGHTS_FILE), weights)
        root.write_json(posixpath.join(tmp, METRICS_FILE), metrics)
        target = posixpath.join(MODELS_DIR, model_version)
        try:
            if root.exists(target):
                raise FileExistsError(target)
            if root.is_local:
                os.rename(root.path(tmp), root.path(target))
            else:
                root.fs.mv(root.path(tmp), root.path(target), recursive=True)
            return metrics
        except (FileExistsError, OSError):
            # Another trainer took this version first; try the next number.
            root.fs.rm(root.path(tmp), recursive=True)
    raise RuntimeError(f"could not find a free model version for {dataset}-{version} among {list_models(root)}")


def train_model(root: DataRoot, dataset: str, version: str = "latest", cfg: TrainConfig | None = None) -> dict:
    """Train a SmallCNN on release `version` of `dataset`; write models/<model_version>/; return its metrics.

    The label list is the sorted labels of the train split; val/test rows with other labels are left
    out of evaluation (counted in the metrics). The checkpoint with the best val accuracy is kept; with
    an empty val split the last epoch is kept and there is no early stopping.
    """
    cfg = cfg or TrainConfig()
    release = load_release(root, dataset, version)
    train_t = image_rows(release.train)
    if train_t.num_rows == 0:
        raise ValueError(f"release {dataset}/{release.version} has no image records in its train split")
    labels = sorted(set(train_t.column("label").to_pylist()))
    val_t, val_unknown = _known_labels(image_rows(release.val), labels)
    test_t, test_unknown = _known_labels(image_rows(release.test), labels)

    device = pick_device(cfg.device)
    size = cfg.image_size
    train_ds = ReleaseImageDataset(train_t, labels, get_recipe(cfg.recipe, size, seed=cfg.seed))
    val_ds = ReleaseImageDataset(val_t, labels, get_recipe(cfg.eval_recipe, size))
    test_ds = ReleaseImageDataset(test_t, labels, get_recipe(cfg.eval_recipe, size))

    started = time.perf_counter()
    # fork_rng: seed model init, dropout and shuffling without disturbing the caller's global RNG state.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        generator = torch.Generator().manual_seed(cfg.seed)
        model = SmallCNN(len(labels), width=cfg.width, dropout=cfg.dropout).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
        loss_fn = nn.CrossEntropyLoss()
        train_loader = _loader(train_ds, cfg, True, generator)
        val_loader = _loader(val_ds, cfg, False, None)

        best_state = copy.deepcopy(model.state_dict())
        best_val: float | None = None
        best_score: tuple[float, float] | None = None
        best_epoch = 0
        history: list[dict[str, float]] = []
        epochs_run = 0
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            total_loss, seen = 0.0, 0
            for x, y in train_loader:
                x, y = x.to(device), y.to(device)
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), y)
                loss.backward()
                optimizer.step()
                total_loss += loss.item() * len(y)
                seen += len(y)
            scheduler.step()
            epochs_run = epoch
            if not len(val_ds):
                history.append({"epoch": epoch, "train_loss": total_loss / max(seen, 1)})
                best_state, best_epoch = copy.deepcopy(model.state_dict()), epoch
                continue
            val_cm, val_loss = _evaluate(model, val_loader, len(labels), device)
            val_acc = _accuracy(val_cm)
            history.append(
                {"epoch": epoch, "train_loss": total_loss / max(seen, 1), "val_accuracy": val_acc, "val_loss": val_loss}
            )
            # Accuracy first; on a tie (common on small val sets) the lower val loss wins.
            if best_score is None or (val_acc, -val_loss) > best_score:
                best_score, best_val, best_epoch = (val_acc, -val_loss), val_acc, epoch
                best_state = copy.deepcopy(model.state_dict())
            elif epoch - best_epoch >= cfg.patience:
                break
        train_seconds = time.perf_counter() - started

        model.load_state_dict(best_state)
        cm, test_loss = _evaluate(model, _loader(test_ds, cfg, False, None), len(labels), device)

    per_class = {lab: (float(cm[k, k] / cm[k].sum()) if cm[k].sum() else None) for k, lab in enumerate(labels)}
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    metrics: dict[str, Any] = {
        "dataset": dataset,
        "release": release.version,
        "release_manifest_sha256": {k: v["sha256"] for k, v in release.manifest.get("files", {}).items()},
        "labels": labels,
        "model": {"arch": "SmallCNN", "num_classes": len(labels), "width": cfg.width, "dropout": cfg.dropout},
        "image_size": size,
        "recipe": cfg.recipe,
        "eval_recipe": cfg.eval_recipe,
        "config": cfg.model_dump(),
        "device": str(device),
        "epochs_run": epochs_run,
        "best_epoch": best_epoch,
        "val_accuracy": best_val,
        "test_accuracy": _accuracy(cm),
        "test_loss": test_loss if len(test_ds) else None,
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "train_seconds": round(train_seconds, 3),
        "n_train": len(train_ds),
        "n_val": len(val_ds),
        "n_test": len(test_ds),
        "n_eval_unknown_label": val_unknown + test_unknown,
        "history": history,
        "created_at": datetime.now(UTC).isoformat(timespec="microseconds"),
    }
    return _publish(root, dataset, release.version, buf.getvalue(), metrics)

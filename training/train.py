"""The train loop: fit a SmallCNN on a verified release, keep the best val checkpoint, report test metrics."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import posixpath
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from pydantic import BaseModel, Field
from torch import nn
from torch.utils.data import DataLoader, Dataset

from corpus.releases.recipes import AugmentationRecipe
from corpus.releases.versions import Release, load_release
from corpus.store import DataRoot
from training.augment import build_recipe, serialize
from training.data import EpochSampler, ReleaseImageDataset, image_rows
from training.evaluation import ECE_BINS, compute_calibration, compute_confusion, compute_per_class
from training.model import SmallCNN
from training.registry import METRICS_FILE, MODELS_DIR, REPORT_FILE, WEIGHTS_FILE, list_models
from training.report import render_report

RUNS_DIR = posixpath.join(MODELS_DIR, ".runs")
CHECKPOINT_FILE = "last.pt"
# torchvision's reference classification script defaults to 16 loader workers; past that, small images
# rarely decode faster and each worker holds its own copy of the split.
MAX_AUTO_WORKERS = 16


class TrainConfig(BaseModel):
    """How a model is trained."""

    image_size: int = Field(64, ge=8, description="Side of the square input, in pixels.")
    epochs: int = Field(30, ge=1, description="Most epochs to run.")
    batch_size: int = Field(32, ge=1, description="Images per forward pass.")
    accumulate: int = Field(
        1, ge=1, description="Batches per optimizer step (gradient accumulation): effective batch = batch_size x this."
    )
    # 3e-3 with AdamW suits a small BN CNN from scratch (measured on the synthetic test set; 1e-3 is slower).
    lr: float = Field(3e-3, gt=0, description="AdamW learning rate (cosine-annealed to 0).")
    # torch.optim.AdamW's own default.
    weight_decay: float = Field(1e-2, ge=0)
    width: int = Field(32, ge=4, description="Channels of the first SmallCNN block.")
    dropout: float = Field(0.2, ge=0, lt=1)
    recipe: str | None = Field(
        None, description="Augmentation recipe; empty = the one the release records (the reproducible choice)."
    )
    eval_recipe: str | None = Field(None, description="Recipe for val, test and prediction; empty = the release's.")
    seed: int = 0
    # Early stopping patience: a common default (Keras examples use 5-10) for runs of ~30 epochs.
    patience: int = Field(8, ge=1, description="Stop after this many epochs without a better val accuracy.")
    num_workers: int | None = Field(
        None, ge=0, description="DataLoader workers; empty = sized to the machine (CUDA: CPUs - 1; CPU: 0)."
    )
    worker_start: Literal["spawn", "forkserver", "fork"] = Field(
        "spawn", description="How loader workers start: spawn is safe beside Prefect's threads; fork starts faster."
    )
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="Autocast dtype: auto = bf16 on CUDA that supports it (else fp16), fp32 on CPU."
    )
    channels_last: bool = Field(True, description="NHWC memory format (faster convolutions on tensor cores).")
    resume: bool = Field(True, description="Continue from the last checkpoint of an identical interrupted run.")
    device: str = Field("auto", description="'auto' (cuda if available), 'cpu', 'cuda' or 'cuda:N'.")


def pick_device(pref: str = "auto") -> torch.device:
    """The torch device to run on: CUDA when available for 'auto', else CPU; an explicit choice is checked."""
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(pref)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {pref!r} asked for but CUDA is not available")
    return device


def pick_precision(device: torch.device, pref: str = "auto") -> torch.dtype | None:
    """The autocast dtype for `device` (None = full fp32).

    auto: bf16 on CUDA GPUs that support it (Ampere and newer), fp16 (with loss scaling) on older ones,
    fp32 on CPU, where bf16 autocast only pays off on CPUs with AMX/AVX512-BF16 and is slower elsewhere.
    """
    if pref == "fp32":
        return None
    if pref == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if pref == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError(f"{device} does not support bf16; use precision='fp16' or 'auto'")
        return torch.bfloat16
    if pref == "fp16":
        if device.type != "cuda":
            raise ValueError("fp16 autocast needs CUDA; use 'bf16' or 'fp32' on CPU")
        return torch.float16
    raise ValueError(f"unknown precision {pref!r}; use auto, bf16, fp16 or fp32")


def loader_workers(requested: int | None = None, device: torch.device | None = None) -> int:
    """DataLoader workers: `requested`; else on CUDA the CPUs this process may use minus one (left for the
    training loop), at most MAX_AUTO_WORKERS; else (CPU training) 0, since torch's intra-op threads already
    use every core for the model and workers would only compete with them."""
    if requested is not None:
        return requested
    if device is None or device.type != "cuda":
        return 0
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(0, min(MAX_AUTO_WORKERS, cpus - 1))


def make_loader(
    ds: Dataset,
    batch_size: int,
    *,
    device: torch.device,
    workers: int,
    worker_start: str = "spawn",
    sampler: EpochSampler | None = None,
    seed: int = 0,
) -> DataLoader:
    """A DataLoader with pinned memory only on CUDA and persistent workers (started once, not per epoch).

    Its own generator draws the workers' base seed, so starting workers never advances the global RNG
    that dropout uses (a resumed run starts its workers at another epoch than an uninterrupted one).
    """
    return DataLoader(
        ds,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        multiprocessing_context=worker_start if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
    )


def _known_labels(table: pa.Table, labels: list[str]) -> tuple[pa.Table, int]:
    """Rows whose label the model knows, and how many were left out (labels absent from train)."""
    mask = pc.fill_null(pc.is_in(table.column("label"), pa.array(labels, pa.string())), False)
    kept = table.filter(mask)
    return kept, table.num_rows - kept.num_rows


def _recipe_for(release: Release, cfg: TrainConfig) -> tuple[AugmentationRecipe, str]:
    """The recipe to train with and where it came from ("release" or "config")."""
    recipe = release.augmentation
    source = "release"
    if cfg.recipe and cfg.recipe != recipe.name:
        recipe = AugmentationRecipe(name=cfg.recipe, eval_transforms=recipe.eval_transforms)
        source = "config"
    if cfg.eval_recipe:
        named = AugmentationRecipe(name=cfg.eval_recipe)
        recipe = recipe.model_copy(update={"eval_transforms": named.transforms})
        source = "config"
    return recipe, source


class _Run:
    """Everything the loop needs on a device: model, optimizer, schedule, loss scaling, autocast."""

    def __init__(self, cfg: TrainConfig, num_classes: int, device: torch.device) -> None:
        self.cfg, self.device = cfg, device
        self.amp_dtype = pick_precision(device, cfg.precision)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model = SmallCNN(num_classes, width=cfg.width, dropout=cfg.dropout).to(
            device, memory_format=self.memory_format
        )
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=cfg.epochs)
        # Loss scaling is only needed for fp16; bf16 has fp32's exponent range.
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)

    def autocast(self) -> torch.autocast:
        dtype = self.amp_dtype or torch.float32
        return torch.autocast(device_type=self.device.type, dtype=dtype, enabled=self.amp_dtype is not None)

    def to_device(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            x.to(self.device, non_blocking=True, memory_format=self.memory_format),
            y.to(self.device, non_blocking=True),
        )

    def train_epoch(self, loader: DataLoader) -> dict[str, float]:
        """One pass over `loader`; the optimizer steps every `accumulate` batches (and on the last one)."""
        model, acc = self.model, self.cfg.accumulate
        model.train()
        self.optimizer.zero_grad(set_to_none=True)
        n_batches = len(loader)
        total_loss, seen, wait = 0.0, 0, 0.0
        started = tick = time.perf_counter()
        for step, (x, y) in enumerate(loader):
            wait += time.perf_counter() - tick
            x, y = self.to_device(x, y)
            with self.autocast():
                logits = model(x)
            loss = nn.functional.cross_entropy(logits.float(), y)
            # Average over the batches of this step's group (the last group may be shorter).
            group = min(acc, n_batches - (step // acc) * acc)
            self.scaler.scale(loss / group).backward()
            if (step + 1) % acc == 0 or step + 1 == n_batches:
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
            total_loss += loss.item() * len(y)
            seen += len(y)
            tick = time.perf_counter()
        self.scheduler.step()
        elapsed = time.perf_counter() - started
        return {"train_loss": total_loss / max(seen, 1), "seconds": elapsed, "data_wait_seconds": wait, "images": seen}

    @torch.no_grad()
    def predict(self, loader: DataLoader) -> tuple[np.ndarray, np.ndarray, float]:
        """Softmax probabilities (N, K), targets (N,) and mean cross-entropy of the model over `loader`."""
        self.model.eval()
        probs, targets = [], []
        loss_sum, n = 0.0, 0
        for x, y in loader:
            x, y = self.to_device(x, y)
            with self.autocast():
                logits = self.model(x)
            logits = logits.float()
            loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
            n += len(y)
            probs.append(torch.softmax(logits, 1).cpu().numpy())
            targets.append(y.cpu().numpy())
        k = self.model.num_classes
        return (
            np.concatenate(probs) if probs else np.zeros((0, k)),
            np.concatenate(targets) if targets else np.zeros(0, np.int64),
            loss_sum / max(n, 1),
        )


def _accuracy(cm: np.ndarray) -> float | None:
    total = int(cm.sum())
    return float(np.trace(cm) / total) if total else None


def _run_key(dataset: str, release: Release, cfg: TrainConfig, recipe: AugmentationRecipe) -> str:
    """Identity of a training run for resuming: the release's content, the recipe and the settings that
    change the result (not the device, workers or resume flag)."""
    settings = cfg.model_dump(exclude={"device", "num_workers", "worker_start", "resume"})
    files = {k: v["sha256"] for k, v in release.manifest.get("files", {}).items()}
    blob = json.dumps([dataset, release.version, files, recipe.model_dump(), settings], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _load_checkpoint(root: DataRoot, path: str) -> dict[str, Any] | None:
    if not root.exists(path):
        return None
    return torch.load(io.BytesIO(root.read_bytes(path)), map_location="cpu", weights_only=True)


def _to_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _next_model_version(root: DataRoot, dataset: str, version: str) -> str:
    prefix = f"{dataset}-{version}-m"
    pattern = re.compile(re.escape(prefix) + r"(\d+)$")
    taken = [int(m.group(1)) for n in root.list_dirs(MODELS_DIR) if (m := pattern.match(n))]
    return f"{prefix}{max(taken, default=0) + 1:03d}"


def _publish(root: DataRoot, dataset: str, version: str, weights: bytes, metrics: dict[str, Any]) -> dict[str, Any]:
    """Write weights + metrics + report under a temp folder and move it to the next free model version
    (on object storage: straight into that version's folder, metrics.json last)."""
    for _ in range(20):
        model_version = _next_model_version(root, dataset, version)
        metrics = {**metrics, "model_version": model_version}
        if not root.is_local:
            # Object storage has no atomic rename (a folder move is a copy per object, in any order), so
            # write in place with metrics.json last: the registry counts a model complete once it exists.
            target = posixpath.join(MODELS_DIR, model_version)
            root.write_bytes(posixpath.join(target, WEIGHTS_FILE), weights)
            root.write_bytes(posixpath.join(target, REPORT_FILE), render_report(metrics).encode())
            root.write_json(posixpath.join(target, METRICS_FILE), metrics)
            return metrics
        tmp = posixpath.join(MODELS_DIR, f".tmp-{uuid.uuid4().hex}")
        root.write_bytes(posixpath.join(tmp, WEIGHTS_FILE), weights)
        root.write_json(posixpath.join(tmp, METRICS_FILE), metrics)
        root.write_bytes(posixpath.join(tmp, REPORT_FILE), render_report(metrics).encode())
        target = posixpath.join(MODELS_DIR, model_version)
        try:
            if root.exists(target):
                raise FileExistsError(target)
            os.rename(root.path(tmp), root.path(target))
            return metrics
        except (FileExistsError, OSError):
            # Another trainer took this version first; try the next number.
            root.fs.rm(root.path(tmp), recursive=True)
    raise RuntimeError(f"could not find a free model version for {dataset}-{version} among {list_models(root)}")


def train_model(root: DataRoot, dataset: str, version: str = "latest", cfg: TrainConfig | None = None) -> dict:
    """Train a SmallCNN on release `version` of `dataset`; write models/<model_version>/; return its metrics.

    The label list is the sorted labels of the train split; val/test rows with other labels are left
    out of evaluation (counted in the metrics). Augmentation is the release's recipe unless the config
    names another. The checkpoint with the best val accuracy is kept and training stops after
    `patience` epochs without a better one; with an empty val split the last epoch is kept and there is
    no early stopping. After every epoch the run is checkpointed under models/.runs/<run key>/, and a
    rerun of the same release + config resumes from there (the checkpoint is removed once published).
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
    workers = loader_workers(cfg.num_workers, device)
    size = cfg.image_size
    recipe, recipe_source = _recipe_for(release, cfg)
    train_tf, eval_tf = build_recipe(recipe, size, seed=cfg.seed)
    train_ds = ReleaseImageDataset(train_t, labels, train_tf, seed=cfg.seed)
    val_ds = ReleaseImageDataset(val_t, labels, eval_tf)
    test_ds = ReleaseImageDataset(test_t, labels, eval_tf)
    run_dir = posixpath.join(RUNS_DIR, _run_key(dataset, release, cfg, recipe))
    ckpt_path = posixpath.join(run_dir, CHECKPOINT_FILE)

    # fork_rng: seed model init and dropout without disturbing the caller's global RNG state.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        run = _Run(cfg, len(labels), device)
        sampler = EpochSampler(len(train_ds), cfg.seed, shuffle=True)
        loader_args = {"device": device, "workers": workers, "worker_start": cfg.worker_start, "seed": cfg.seed}
        train_loader = make_loader(train_ds, cfg.batch_size, sampler=sampler, **loader_args)
        val_loader = make_loader(val_ds, cfg.batch_size, **loader_args)

        best_state = _cpu_state(run.model)
        best_score: list[float] | None = None
        best_val: float | None = None
        best_epoch, start_epoch, stopped, resumed_from = 0, 1, False, None
        history: list[dict[str, Any]] = []
        state = _load_checkpoint(root, ckpt_path) if cfg.resume else None
        if state is not None:
            run.model.load_state_dict(state["model"])
            run.optimizer.load_state_dict(state["optimizer"])
            run.scheduler.load_state_dict(state["scheduler"])
            run.scaler.load_state_dict(state["scaler"])
            torch.set_rng_state(state["rng"])
            if device.type == "cuda" and state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(state["cuda_rng"], device)
            best_state, best_score, best_val = state["best_state"], state["best_score"], state["best_val"]
            best_epoch, stopped, history = state["best_epoch"], state["stopped"], state["history"]
            start_epoch, resumed_from = state["epoch"] + 1, state["epoch"]

        for epoch in range(start_epoch, cfg.epochs + 1):
            if stopped:
                break
            sampler.set_epoch(epoch)
            stats = run.train_epoch(train_loader)
            record: dict[str, Any] = {"epoch": epoch, **stats, "lr": run.scheduler.get_last_lr()[0]}
            if len(val_ds):
                probs, targets, val_loss = run.predict(val_loader)
                val_acc = _accuracy(compute_confusion(targets, probs.argmax(1), len(labels)))
                record.update(val_accuracy=val_acc, val_loss=val_loss)
                # Accuracy first; on a tie (common on small val sets) the lower val loss wins.
                if best_score is None or (val_acc, -val_loss) > tuple(best_score):
                    best_score, best_val, best_epoch = [val_acc, -val_loss], val_acc, epoch
                    best_state = _cpu_state(run.model)
                elif epoch - best_epoch >= cfg.patience:
                    stopped = True
            else:
                best_state, best_epoch = _cpu_state(run.model), epoch
            history.append(record)
            checkpoint = {
                "epoch": epoch,
                "model": _cpu_state(run.model),
                "optimizer": run.optimizer.state_dict(),
                "scheduler": run.scheduler.state_dict(),
                "scaler": run.scaler.state_dict(),
                "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "best_state": best_state,
                "best_score": best_score,
                "best_val": best_val,
                "best_epoch": best_epoch,
                "stopped": stopped,
                "history": history,
            }
            root.write_bytes(ckpt_path, _to_bytes(checkpoint))
        epochs_run = max([h["epoch"] for h in history], default=0)

        run.model.load_state_dict(best_state)
        test_probs, test_targets, test_loss = run.predict(
            make_loader(test_ds, cfg.batch_size, device=device, workers=0)
        )

    preds = test_probs.argmax(1) if len(test_probs) else np.zeros(0, np.int64)
    cm = compute_confusion(test_targets, preds, len(labels))
    per_class_metrics = compute_per_class(cm, labels)
    calibration = compute_calibration(test_probs, test_targets, ECE_BINS)
    f1s = [m["f1"] for m in per_class_metrics.values() if m["f1"] is not None]
    train_seconds = sum(h["seconds"] for h in history)
    images = sum(h["images"] for h in history)
    metrics: dict[str, Any] = {
        "dataset": dataset,
        "release": release.version,
        "release_id": release.manifest.get("release_id"),
        "release_manifest_sha256": {k: v["sha256"] for k, v in release.manifest.get("files", {}).items()},
        "labels": labels,
        "model": {"arch": "SmallCNN", "num_classes": len(labels), "width": cfg.width, "dropout": cfg.dropout},
        "image_size": size,
        "recipe": recipe.name,
        "eval_recipe": cfg.eval_recipe or "release",
        "augmentation": {
            **recipe.model_dump(),
            "source": recipe_source,
            "albumentations": serialize(train_tf),
            "albumentations_eval": serialize(eval_tf),
        },
        "config": cfg.model_dump(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision": str(run.amp_dtype).replace("torch.", "") if run.amp_dtype else "fp32",
        "channels_last": cfg.channels_last,
        "loader_workers": workers,
        "effective_batch_size": cfg.batch_size * cfg.accumulate,
        "resumed_from_epoch": resumed_from,
        "epochs_run": epochs_run,
        "early_stopped": stopped,
        "best_epoch": best_epoch,
        "val_accuracy": best_val,
        "test_accuracy": _accuracy(cm),
        "test_loss": test_loss if len(test_ds) else None,
        "test_macro_f1": float(np.mean(f1s)) if f1s else None,
        "test_ece": calibration["ece"],
        "calibration": calibration,
        "per_class": {lab: m["recall"] for lab, m in per_class_metrics.items()},
        "per_class_metrics": per_class_metrics,
        "confusion_matrix": cm.tolist(),
        "train_seconds": round(train_seconds, 3),
        "train_images_per_s": round(images / train_seconds, 1) if train_seconds > 0 else None,
        "data_wait_fraction": round(sum(h["data_wait_seconds"] for h in history) / train_seconds, 4)
        if train_seconds > 0
        else None,
        "n_train": len(train_ds),
        "n_val": len(val_ds),
        "n_test": len(test_ds),
        "n_eval_unknown_label": val_unknown + test_unknown,
        "history": history,
        "created_at": datetime.now(UTC).isoformat(timespec="microseconds"),
    }
    published = _publish(root, dataset, release.version, _to_bytes(_cpu_state(run.model)), metrics)
    root.fs.rm(root.path(run_dir), recursive=True)
    if root.is_local:
        # Leave models/ holding only models once no other run is checkpointing (else rmdir fails: fine).
        with contextlib.suppress(OSError):
            os.rmdir(root.path(RUNS_DIR))
    return published

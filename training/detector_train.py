"""Training the detector: a CenterNet fitted on a verified detect release, best val mAP kept, test mAP, published."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import albumentations as A
import pyarrow as pa
import torch

from corpus.releases.versions import Release, load_release
from corpus.store import DataRoot
from corpus.tasks import task_of
from training.augment import build_transforms, serialize
from training.box_augment import BOX_RECIPES, build_box_transforms
from training.box_data import ReleaseBoxDataset, box_labels, box_rows, truth_box_sets
from training.box_evaluation import compute_map
from training.comparison import compare_on_eval_set
from training.config import TrainConfig
from training.data import EpochSampler
from training.detector import ARCH, NECK_CHANNELS, STRIDE, CenterNet, detection_loss
from training.detector_predict import EVAL_RECIPE, detect_records, to_box_sets
from training.devices import loader_workers, make_loader, pick_device, pick_precision
from training.loop import FitState, cpu_state, load_checkpoint, to_bytes
from training.train import CHECKPOINT_FILE, RUNS_DIR, _publish, redact_source
from training.transfer import freeze, make_scheduler, optimizer_steps, set_train_mode, trainable_parameters
from training.weights import FitReport, LoadedWeights, fit_weights, load_weights

TRAIN_RECIPE = "boxes-basic"
EpochHook = Callable[[dict[str, Any]], None]


@dataclass
class DetectorRun:
    """A detector on a device with its optimizer and schedule (the attributes training.loop.FitState reads)."""

    cfg: TrainConfig
    model: CenterNet
    device: torch.device
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    step_per_batch: bool
    frozen: list[torch.nn.Module]
    amp_dtype: torch.dtype | None
    scaler: torch.amp.GradScaler
    weights_report: FitReport | None = None

    def autocast(self) -> torch.autocast:
        dtype = self.amp_dtype or torch.float32
        return torch.autocast(device_type=self.device.type, dtype=dtype, enabled=self.amp_dtype is not None)


def _make_run(cfg: TrainConfig, num_classes: int, device: torch.device, weights: LoadedWeights | None, steps: int):
    model = CenterNet(cfg.backbone, num_classes, width=cfg.width)
    report = fit_weights(model.backbone, weights) if weights is not None else None
    frozen = freeze(model, cfg.transfer)
    model.to(device)
    optimizer = torch.optim.AdamW(trainable_parameters(model), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler, per_batch = make_scheduler(optimizer, cfg, steps)
    amp_dtype = pick_precision(device, cfg.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    return DetectorRun(cfg, model, device, optimizer, scheduler, per_batch, frozen, amp_dtype, scaler, report)


def train_epoch(run: DetectorRun, loader: torch.utils.data.DataLoader) -> dict[str, float]:
    """One pass over `loader`, an optimizer step per batch; the epoch's mean loss and its parts."""
    set_train_mode(run.model, run.frozen)
    sums: dict[str, float] = {"train_loss": 0.0, "heatmap": 0.0, "size": 0.0, "offset": 0.0}
    seen, started = 0, time.perf_counter()
    for x, targets in loader:
        x = x.to(run.device, non_blocking=True)
        targets = {k: v.to(run.device, non_blocking=True) for k, v in targets.items()}
        with run.autocast():
            outputs = run.model(x)
        loss, parts = detection_loss(outputs, targets)
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
        if run.step_per_batch:
            run.scheduler.step()
        for name, value in (("train_loss", float(loss.detach())), *parts.items()):
            sums[name] += value * len(x)
        seen += len(x)
    if not run.step_per_batch:
        run.scheduler.step()
    out = {name: value / max(seen, 1) for name, value in sums.items()}
    return {**out, "seconds": time.perf_counter() - started, "images": seen}


def evaluate_split(run: DetectorRun, rows: pa.Table, labels: list[str], eval_tf: Callable) -> dict[str, Any]:
    """compute_map of the model over the boxed rows of a split, in the images' own pixels (boxes of labels
    the model lacks left out, counted in "unknown_label_boxes")."""
    rows = box_rows(rows)
    truth, unknown = truth_box_sets(rows, labels)
    _, found, _, _ = detect_records(run.model, rows, eval_tf, run.cfg.image_size, device=run.device)
    return {**compute_map(to_box_sets(found, labels), truth), "n": rows.num_rows, "unknown_label_boxes": unknown}


@dataclass
class DetectPrep:
    """What a detector run works on: the release, its label list, splits with boxes, transforms, weights."""

    dataset: str
    release: Release
    labels: list[str]
    train: pa.Table
    val: pa.Table
    test: pa.Table
    recipe: str
    train_tf: A.Compose
    eval_tf: A.Compose
    weights: LoadedWeights | None
    run_dir: str


def _run_key(dataset: str, release: Release, cfg: TrainConfig, recipe: str, weights_sha256: str | None) -> str:
    """Identity of a detector run for resuming: the release's content, the recipe, the weights' content and the
    settings that change the result (as training.train's run key, with the task in it)."""
    settings = cfg.model_dump(exclude={"device", "num_workers", "worker_start", "resume", "compile"})
    files = {k: v["sha256"] for k, v in release.manifest.get("files", {}).items()}
    blob = json.dumps(["detect", dataset, release.version, files, recipe, settings, weights_sha256], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def prepare_detection(root: DataRoot, dataset: str, version: str, cfg: TrainConfig) -> DetectPrep:
    """Load and verify a detect release; the label list (train's box labels, sorted), splits and transforms.
    ValueError names the release when it is not a detect release or its train split has no boxes."""
    release = load_release(root, dataset, version)
    if task_of(release.manifest) != "detect":
        raise ValueError(f"release {dataset}/{release.version} is a {task_of(release.manifest)} release, not detect")
    train = box_rows(release.train)
    labels = box_labels(train)
    if not labels:
        raise ValueError(f"release {dataset}/{release.version} has no boxes in its train split")
    recipe = cfg.recipe or TRAIN_RECIPE
    if recipe not in BOX_RECIPES:
        raise ValueError(f"recipe {recipe!r} does not move boxes; box recipes: {sorted(BOX_RECIPES)}")
    eval_name = cfg.eval_recipe or EVAL_RECIPE
    if eval_name not in BOX_RECIPES:
        raise ValueError(f"eval_recipe {eval_name!r} is not a box recipe; box recipes: {sorted(BOX_RECIPES)}")
    weights = load_weights(cfg.weights, cfg.weights_sha256, root=root) if cfg.weights else None
    return DetectPrep(
        dataset=dataset,
        release=release,
        labels=labels,
        train=train,
        val=box_rows(release.val),
        test=box_rows(release.test),
        recipe=recipe,
        train_tf=build_box_transforms(BOX_RECIPES[recipe], cfg.image_size, seed=cfg.seed),
        eval_tf=build_transforms(BOX_RECIPES[eval_name], cfg.image_size),
        weights=weights,
        run_dir=posixpath.join(RUNS_DIR, _run_key(dataset, release, cfg, recipe, weights and weights.sha256)),
    )


def fit_detector(
    root: DataRoot, prep: DetectPrep, cfg: TrainConfig, on_epoch: EpochHook | None = None
) -> tuple[DetectorRun, FitState]:
    """Fit for up to cfg.epochs; the model with the best val mAP@[.5:.95] (ties: the earlier epoch) is kept,
    stopping after cfg.patience epochs without a better one; without val rows, the last epoch is kept. After
    every epoch the run is checkpointed under prep.run_dir; with cfg.resume a rerun continues from there."""
    device = pick_device(cfg.device)
    ds = ReleaseBoxDataset(prep.train, prep.labels, prep.train_tf, cfg.image_size, seed=cfg.seed)
    sampler = EpochSampler(len(ds), cfg.seed)
    workers = loader_workers(cfg.num_workers, device)
    # A last batch of one image fails BatchNorm wherever its maps are 1x1 (a ResNet's layer4 at 32 px): drop it.
    lone = len(ds) % cfg.batch_size == 1 and len(ds) > 1
    options = {"workers": workers, "worker_start": cfg.worker_start, "seed": cfg.seed, "drop_last": lone}
    loader = make_loader(ds, cfg.batch_size, device=device, sampler=sampler, **options)
    run = _make_run(cfg, len(prep.labels), device, prep.weights, optimizer_steps(len(loader), 1))
    path = posixpath.join(prep.run_dir, CHECKPOINT_FILE)
    saved = load_checkpoint(root, path) if cfg.resume else None
    state = FitState.resume(run, saved) if saved is not None else FitState(best_state=cpu_state(run.model))
    for epoch in range((state.resumed_from or 0) + 1, cfg.epochs + 1):
        if state.stopped:
            break
        sampler.set_epoch(epoch)
        record: dict[str, Any] = {"epoch": epoch, **train_epoch(run, loader), "lr": run.scheduler.get_last_lr()[0]}
        val = None
        if prep.val.num_rows:
            scores = evaluate_split(run, prep.val, prep.labels, prep.eval_tf)
            record.update(val_map_50=scores["map_50"], val_map_50_95=scores["map_50_95"])
            val = (scores["map_50_95"] or 0.0, 0.0)
        state.observe(run, epoch, val, cfg.patience)
        state.history.append(record)
        root.write_bytes(path, to_bytes(state.checkpoint(run, epoch)))
        if on_epoch is not None:
            on_epoch(record)
    run.model.load_state_dict(state.best_state)
    return run, state


def describe_detector(prep: DetectPrep, cfg: TrainConfig, run: DetectorRun) -> dict[str, Any]:
    """metrics.json "model": what registry.build_model rebuilds (arch CenterNet, its trunk and sizes), the
    pretrained weights (source, sha256, how they fitted the trunk) and the transfer mode."""
    weights = None
    if prep.weights is not None:
        report = run.weights_report.as_dict() if run.weights_report else {}
        weights = {"source": redact_source(prep.weights.source), "sha256": prep.weights.sha256, **report}
        weights["format"] = prep.weights.fmt
    model = run.model
    return {
        "arch": ARCH,
        "backbone": cfg.backbone,
        "num_classes": len(prep.labels),
        "width": cfg.width,
        "neck_channels": NECK_CHANNELS,
        "stride": STRIDE,
        "weights": weights,
        "transfer": cfg.transfer,
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }


def build_detection_metrics(
    prep: DetectPrep, cfg: TrainConfig, run: DetectorRun, state: FitState, test: dict[str, Any]
) -> dict[str, Any]:
    """metrics.json of a trained detector (all but model_version): what it was trained on and with, the fit,
    and test mAP@0.5, mAP@[.5:.95] and AP per label (the fixed eval set's scores are added by train_detector)."""
    manifest = prep.release.manifest
    seconds = sum(h["seconds"] for h in state.history)
    images = sum(h["images"] for h in state.history)
    return {
        "dataset": prep.dataset,
        "release": prep.release.version,
        "release_id": manifest.get("release_id"),
        "release_manifest_sha256": {k: v["sha256"] for k, v in manifest.get("files", {}).items()},
        "task": "detect",
        "labels": prep.labels,
        "model": describe_detector(prep, cfg, run),
        "image_size": cfg.image_size,
        "lr_schedule": cfg.lr_schedule,
        "recipe": prep.recipe,
        "eval_recipe": cfg.eval_recipe or EVAL_RECIPE,
        "augmentation": {
            "name": prep.recipe,
            "source": "config" if cfg.recipe else "default",
            "transforms": BOX_RECIPES[prep.recipe],
            "eval_transforms": BOX_RECIPES[cfg.eval_recipe or EVAL_RECIPE],
            "albumentations": serialize(prep.train_tf),
        },
        "config": cfg.model_dump(),
        "device": str(run.device),
        "device_name": torch.cuda.get_device_name(run.device) if run.device.type == "cuda" else "cpu",
        "precision": str(run.amp_dtype).replace("torch.", "") if run.amp_dtype else "fp32",
        "epochs_run": state.epochs_run,
        "early_stopped": state.stopped,
        "best_epoch": state.best_epoch,
        "resumed_from_epoch": state.resumed_from,
        "val_map_50_95": state.best_val,
        "test_map_50": test["map_50"],
        "test_map_50_95": test["map_50_95"],
        "per_label_ap": test["per_label"],
        "n_eval_unknown_label": test["unknown_label_boxes"],
        "train_seconds": round(seconds, 3),
        "train_images_per_s": round(images / seconds, 1) if seconds > 0 else None,
        "n_train": prep.train.num_rows,
        "n_val": prep.val.num_rows,
        "n_test": prep.test.num_rows,
        "history": state.history,
        "created_at": datetime.now(UTC).isoformat(timespec="microseconds"),
    }


def train_detector(
    root: DataRoot,
    dataset: str,
    version: str = "latest",
    cfg: TrainConfig | None = None,
    on_epoch: EpochHook | None = None,
) -> dict[str, Any]:
    """Train a CenterNet (cfg.backbone as its trunk, from cfg.weights when given, in cfg.transfer mode) on detect
    release `version` of `dataset`; publish models/<model_version>/ as training.train does; return its metrics.

    Augmentation is a box recipe of training.box_augment (cfg.recipe, else boxes-basic), so boxes follow every
    flip, crop and turn. An interrupted run resumes from its last epoch (fit_detector); the checkpoint is
    removed once the model is published. Not yet: DDP, gradient accumulation and torch.compile (classify's
    loop has them); a config asking for one is refused, naming the field."""
    cfg = cfg or TrainConfig()
    for name, wanted in (("devices", cfg.devices > 1), ("accumulate", cfg.accumulate > 1), ("compile", cfg.compile)):
        if wanted:
            raise ValueError(f"{name}={getattr(cfg, name)!r}: the detector trains on one device, unaccumulated, eager")
    prep = prepare_detection(root, dataset, version, cfg)
    cuda = [pick_device(cfg.device)] if pick_device(cfg.device).type == "cuda" else []
    # fork_rng: seed init and augmentation order without disturbing the caller's global RNG state.
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(cfg.seed)
        run, state = fit_detector(root, prep, cfg, on_epoch)
        test = evaluate_split(run, prep.test, prep.labels, prep.eval_tf)
    metrics = build_detection_metrics(prep, cfg, run, state, test)
    # The fixed eval set's images, scored by this detector and by every earlier version's newest one.
    metrics.update(compare_on_eval_set(root, prep.release, run.model, metrics, device=str(run.device)))
    published = _publish(root, dataset, prep.release.version, to_bytes(cpu_state(run.model)), metrics)
    root.fs.rm(root.path(prep.run_dir), recursive=True)
    if root.is_local:
        # Leave models/ holding only models once no other run is checkpointing (else rmdir fails: fine).
        with contextlib.suppress(OSError):
            os.rmdir(root.path(RUNS_DIR))
    return published

"""Training: fit a SmallCNN on a verified release, keep the best val checkpoint, report test metrics, publish."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import albumentations as A
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from corpus.releases.recipes import AugmentationRecipe
from corpus.releases.versions import Release, load_release
from corpus.store import DataRoot
from corpus.tasks import task_of
from training.augment import build_recipe, serialize
from training.comparison import compare_on_eval_set
from training.config import TrainConfig
from training.data import ReleaseImageDataset, image_rows
from training.devices import loader_workers, make_loader, pick_device
from training.distributed import DistContext, agree, barrier, epoch_sampler, init_distributed, shutdown, wrap_model
from training.encoder_init import fit_head_on, prepare_weights, record_refit_val
from training.evaluation import ECE_BINS, compute_calibration, compute_confusion, compute_per_class
from training.loop import FitState, Run, accuracy, cpu_state, fit, to_bytes
from training.multilabel_evaluation import compute_multilabel_metrics
from training.multilabel_model import MultiLabelRun, multilabel_datasets
from training.registry import METRICS_FILE, MODELS_DIR, REPORT_FILE, WEIGHTS_FILE, list_models, model_path
from training.report import render_report
from training.transfer import optimizer_steps
from training.weights import LoadedWeights

RUNS_DIR = posixpath.join(MODELS_DIR, ".runs")
CHECKPOINT_FILE = "last.pt"
EpochHook = Callable[[dict[str, Any]], None]


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


def _run_key(
    dataset: str, release: Release, cfg: TrainConfig, recipe: AugmentationRecipe, weights_sha256: str | None
) -> str:
    """Identity of a training run for resuming: the release's content, the recipe, the pretrained weights'
    content and the settings that change the result (not the device, workers or resume flag)."""
    settings = cfg.model_dump(exclude={"device", "num_workers", "worker_start", "resume", "compile"})
    files = {k: v["sha256"] for k, v in release.manifest.get("files", {}).items()}
    blob = json.dumps([dataset, release.version, files, recipe.model_dump(), settings, weights_sha256], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _next_model_version(root: DataRoot, dataset: str, version: str) -> str:
    prefix = f"{dataset}-{version}-m"
    pattern = re.compile(re.escape(prefix) + r"(\d+)$")
    # taken_names: past claims too, so one left by a trainer that died does not block publishing.
    taken = [int(m.group(1)) for n in root.taken_names(MODELS_DIR) if (m := pattern.match(n))]
    return f"{prefix}{max(taken, default=0) + 1:03d}"


def _publish(root: DataRoot, dataset: str, version: str, weights: bytes, metrics: dict[str, Any]) -> dict[str, Any]:
    """Publish weights + metrics + report as the next free model version (DataRoot.publish_folder,
    metrics.json last: the registry counts a model complete once it exists); the metrics as published."""
    for _ in range(20):
        model_version = _next_model_version(root, dataset, version)
        metrics = {**metrics, "model_version": model_version}
        files = {
            WEIGHTS_FILE: weights,
            REPORT_FILE: render_report(metrics).encode(),
            METRICS_FILE: json.dumps(metrics, indent=2, sort_keys=True, default=str).encode(),
        }
        try:
            root.publish_folder(model_path(model_version), files, METRICS_FILE, read_only=False)
            return metrics
        except FileExistsError:
            continue  # another trainer took this version first; try the next number
    raise RuntimeError(f"could not find a free model version for {dataset}-{version} among {list_models(root)}")


@dataclass
class PreparedRun:
    """What a training run works on: the release, its label list, datasets, recipe, device and run folder."""

    dataset: str
    release: Release
    labels: list[str]
    train_ds: ReleaseImageDataset
    val_ds: ReleaseImageDataset
    test_ds: ReleaseImageDataset
    recipe: AugmentationRecipe
    recipe_source: str
    train_tf: A.Compose
    eval_tf: A.Compose
    n_eval_unknown: int
    device: torch.device
    workers: int
    run_dir: str
    weights: LoadedWeights | None = None
    task: str = "classify"  # corpus.tasks: the release's task type
    encoder_version: str | None = None  # the pool encoder the weights came from (init_from_encoder)


def _class_datasets(
    release: Release, train_tf: A.Compose, eval_tf: A.Compose, seed: int
) -> tuple[list[str], list, int]:
    """(labels, [train, val, test] datasets, val/test rows left out): one class per image; the label list is
    train's labels sorted, and val/test rows whose label train lacks are left out."""
    train_t = image_rows(release.train)
    labels = sorted(set(train_t.column("label").to_pylist()))
    val_t, val_unknown = _known_labels(image_rows(release.val), labels)
    test_t, test_unknown = _known_labels(image_rows(release.test), labels)
    datasets = [
        ReleaseImageDataset(train_t, labels, train_tf, seed=seed),
        ReleaseImageDataset(val_t, labels, eval_tf),
        ReleaseImageDataset(test_t, labels, eval_tf),
    ]
    return labels, datasets, val_unknown + test_unknown


def prepare_run(root: DataRoot, dataset: str, version: str, cfg: TrainConfig) -> PreparedRun:
    """Load and verify the release; the label list (train's labels, sorted), datasets and transforms, by the
    release's task type (one class per image, or label sets: training.multilabel_model)."""
    release = load_release(root, dataset, version)
    task = task_of(release.manifest)
    if image_rows(release.train).num_rows == 0:
        raise ValueError(f"release {dataset}/{release.version} has no image records in its train split")
    device = pick_device(cfg.device)
    recipe, recipe_source = _recipe_for(release, cfg)
    train_tf, eval_tf = build_recipe(recipe, cfg.image_size, seed=cfg.seed)
    make = multilabel_datasets if task == "multilabel" else _class_datasets
    labels, (train_ds, val_ds, test_ds), n_unknown = make(release, train_tf, eval_tf, cfg.seed)
    weights, encoder_version = prepare_weights(root, cfg)
    return PreparedRun(
        dataset=dataset,
        release=release,
        labels=labels,
        train_ds=train_ds,
        val_ds=val_ds,
        test_ds=test_ds,
        recipe=recipe,
        recipe_source=recipe_source,
        train_tf=train_tf,
        eval_tf=eval_tf,
        n_eval_unknown=n_unknown,
        device=device,
        workers=loader_workers(cfg.num_workers, device),
        run_dir=posixpath.join(RUNS_DIR, _run_key(dataset, release, cfg, recipe, weights and weights.sha256)),
        weights=weights,
        task=task,
        encoder_version=encoder_version,
    )


def _fit_prepared(
    root: DataRoot, prep: PreparedRun, cfg: TrainConfig, ctx: DistContext, on_epoch: EpochHook | None = None
) -> tuple[Run, FitState]:
    """Build the model and loaders (seeded) and fit; the run's model is left holding the best weights.
    Under DDP each process trains on its shard of every epoch (every process evaluates the whole val split)."""
    sampler = epoch_sampler(len(prep.train_ds), cfg.seed, ctx)
    loader_args = {"device": prep.device, "workers": prep.workers, "worker_start": cfg.worker_start, "seed": cfg.seed}
    # A last batch of one image fails BatchNorm wherever its maps are 1x1 (a ResNet's layer4 at 32 px): drop it.
    lone = len(sampler) % cfg.batch_size == 1 and len(sampler) > 1
    train_loader = make_loader(prep.train_ds, cfg.batch_size, sampler=sampler, drop_last=lone, **loader_args)
    steps = optimizer_steps(len(train_loader), cfg.accumulate)
    run_type = MultiLabelRun if prep.task == "multilabel" else Run
    run = run_type(cfg, len(prep.labels), prep.device, weights=prep.weights, steps_per_epoch=steps)
    run.net = wrap_model(run.net, ctx, prep.device)
    if cfg.compile:
        run.enable_compile()  # after the DDP wrap: dynamo splits the graph at DDP's gradient buckets
    val_loader = make_loader(prep.val_ds, cfg.batch_size, **loader_args) if len(prep.val_ds) else None
    state = fit(
        run,
        train_loader,
        sampler,
        val_loader,
        root=root,
        checkpoint_path=posixpath.join(prep.run_dir, CHECKPOINT_FILE),
        resume=cfg.resume,
        is_main=ctx.is_main,
        agree=(lambda flag: agree(flag, ctx)) if ctx.enabled else None,
        on_epoch=on_epoch,
    )
    run.model.load_state_dict(state.best_state)
    if cfg.head_fit == "logistic":
        fit_head_on(run.model, prep.train_ds, prep.eval_tf, prep.device, cfg)
        if val_loader is not None:  # the val figures must describe the refitted model, the one published
            probs, targets, val_loss = run.predict(val_loader)
            record_refit_val(state, run.val_score(probs, targets), val_loss)
    return run, state


def compute_test_metrics(
    probs: np.ndarray, targets: np.ndarray, loss: float | None, labels: list[str]
) -> dict[str, Any]:
    """Test-split metrics of predicted probabilities (N, K) against targets (N,): accuracy, loss, macro F1,
    calibration (ECE), per-class recall and metrics, confusion matrix. `loss` None: no test rows."""
    preds = probs.argmax(1) if len(probs) else np.zeros(0, np.int64)
    cm = compute_confusion(targets, preds, len(labels))
    per_class_metrics = compute_per_class(cm, labels)
    calibration = compute_calibration(probs, targets, ECE_BINS)
    f1s = [m["f1"] for m in per_class_metrics.values() if m["f1"] is not None]
    return {
        "test_accuracy": accuracy(cm),
        "test_loss": loss,
        "test_macro_f1": float(np.mean(f1s)) if f1s else None,
        "test_ece": calibration["ece"],
        "calibration": calibration,
        "per_class": {lab: m["recall"] for lab, m in per_class_metrics.items()},
        "per_class_metrics": per_class_metrics,
        "confusion_matrix": cm.tolist(),
    }


def evaluate(run: Run, prep: PreparedRun, cfg: TrainConfig) -> dict[str, Any]:
    """compute_test_metrics of `run.model` over the prepared test split."""
    probs, targets, loss = run.predict(make_loader(prep.test_ds, cfg.batch_size, device=prep.device, workers=0))
    if prep.task == "multilabel":
        return {
            "test_loss": loss if len(prep.test_ds) else None,
            **compute_multilabel_metrics(probs, targets, prep.labels),
        }
    return compute_test_metrics(probs, targets, loss if len(prep.test_ds) else None, prep.labels)


def _throughput(history: list[dict[str, Any]]) -> dict[str, Any]:
    train_seconds = sum(h["seconds"] for h in history)
    images = sum(h["images"] for h in history)
    wait = sum(h["data_wait_seconds"] for h in history)
    return {
        "train_seconds": round(train_seconds, 3),
        "train_images_per_s": round(images / train_seconds, 1) if train_seconds > 0 else None,
        "data_wait_fraction": round(wait / train_seconds, 4) if train_seconds > 0 else None,
    }


def redact_source(source: str) -> str:
    """`source` without a URL's password or query (a presigned URL's signature is a credential)."""
    parts = urllib.parse.urlsplit(source)
    if not parts.scheme or parts.scheme == "file":
        return source
    netloc = parts.hostname or ""
    netloc = f"{parts.username}@{netloc}" if parts.username else netloc
    netloc = f"{netloc}:{parts.port}" if parts.port else netloc
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def describe_model(prep: PreparedRun, cfg: TrainConfig, run: Run) -> dict[str, Any]:
    """metrics.json "model": the architecture registry.build_model rebuilds, the pretrained weights (source,
    sha256, how they fitted) and the transfer mode."""
    arch = "SmallCNN" if cfg.backbone == "small-cnn" else cfg.backbone
    weights = None
    if prep.weights is not None:
        report = run.weights_report.as_dict() if run.weights_report else {}
        weights = {
            "source": redact_source(prep.weights.source),
            "sha256": prep.weights.sha256,
            "format": prep.weights.fmt,
            "encoder_version": prep.encoder_version,
            **report,
        }
    trainable = sum(p.numel() for p in run.model.parameters() if p.requires_grad)
    return {
        "arch": arch,
        "backbone": cfg.backbone,
        "num_classes": len(prep.labels),
        "width": cfg.width,
        "dropout": cfg.dropout,
        "weights": weights,
        "transfer": cfg.transfer,
        "parameters": sum(p.numel() for p in run.model.parameters()),
        "trainable_parameters": trainable,
    }


def build_metrics(
    prep: PreparedRun, cfg: TrainConfig, run: Run, state: FitState, test: dict[str, Any]
) -> dict[str, Any]:
    """metrics.json of a trained model (all but model_version, which publishing adds): what it was trained
    on and with, how the fit went, and the test metrics."""
    manifest = prep.release.manifest
    device = prep.device
    return {
        "dataset": prep.dataset,
        "release": prep.release.version,
        "release_id": manifest.get("release_id"),
        "release_manifest_sha256": {k: v["sha256"] for k, v in manifest.get("files", {}).items()},
        "labels": prep.labels,
        "task": prep.task,
        "model": describe_model(prep, cfg, run),
        "image_size": cfg.image_size,
        "lr_schedule": cfg.lr_schedule,
        "recipe": prep.recipe.name,
        "eval_recipe": cfg.eval_recipe or "release",
        "augmentation": {
            **prep.recipe.model_dump(),
            "source": prep.recipe_source,
            "albumentations": serialize(prep.train_tf),
            "albumentations_eval": serialize(prep.eval_tf),
        },
        "config": cfg.model_dump(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision": str(run.amp_dtype).replace("torch.", "") if run.amp_dtype else "fp32",
        "channels_last": run.memory_format == torch.channels_last,
        "compile": {"requested": cfg.compile, "used": run.compiled is not None, "error": run.compile_error},
        "loader_workers": prep.workers,
        "effective_batch_size": cfg.batch_size * cfg.accumulate,
        "resumed_from_epoch": state.resumed_from,
        "epochs_run": state.epochs_run,
        "early_stopped": state.stopped,
        "best_epoch": state.best_epoch,
        "val_accuracy": state.best_val,
        **test,
        **_throughput(state.history),
        "n_train": len(prep.train_ds),
        "n_val": len(prep.val_ds),
        "n_test": len(prep.test_ds),
        "n_eval_unknown_label": prep.n_eval_unknown,
        "history": state.history,
        "created_at": datetime.now(UTC).isoformat(timespec="microseconds"),
    }


def evaluate_eval_set(root: DataRoot, prep: PreparedRun, run: Run, metrics: dict[str, Any]) -> dict[str, Any]:
    """The model on the release's fixed eval set ("eval_set": its scores, per class or per label) and beside
    the newest model of every earlier version on the same items ("eval_by_version", oldest first, this
    model last with "current": True): comparison.compare_on_eval_set, for one class or a label set per image.
    Both empty for a release from before eval sets."""
    return compare_on_eval_set(root, prep.release, run.model, metrics, device=str(prep.device))


def train_model(
    root: DataRoot,
    dataset: str,
    version: str = "latest",
    cfg: TrainConfig | None = None,
    on_epoch: EpochHook | None = None,
) -> dict:
    """Train cfg.backbone (SmallCNN or a ResNet, from cfg.weights when given, in cfg.transfer mode) on
    release `version` of `dataset`; write models/<model_version>/; return its metrics.

    The label list is the sorted labels of the train split; val/test rows with other labels are left
    out of evaluation (counted in the metrics). Augmentation is the release's recipe unless the config
    names another. The checkpoint with the best val accuracy is kept and training stops after
    `patience` epochs without a better one; with an empty val split the last epoch is kept and there is
    no early stopping. After every epoch but the last the run is checkpointed under models/.runs/<run key>/
    (written while the next epoch trains, training.loop.fit), and a rerun of the same release + config
    resumes from there (the checkpoint is removed once published).

    Under torchrun with several processes (training.distributed) each trains on its shard of every epoch
    and rank 0 alone checkpoints, evaluates and publishes; the other ranks return {"model_version": None}.
    `on_epoch` is called with each epoch's history record as it ends (progress for the caller to show).
    """
    cfg = cfg or TrainConfig()
    ctx, device = init_distributed(cfg.device)
    try:
        prep = prepare_run(root, dataset, version, cfg)
        prep.device = device
        # fork_rng: seed model init and dropout without disturbing the caller's global RNG state.
        with torch.random.fork_rng(devices=[prep.device] if prep.device.type == "cuda" else []):
            torch.manual_seed(cfg.seed)
            run, state = _fit_prepared(root, prep, cfg, ctx, on_epoch)
            if not ctx.is_main:  # rank 0 evaluates and publishes the one model of the job
                barrier(ctx)
                return {"model_version": None, "rank": ctx.rank, "world_size": ctx.world_size}
            test = evaluate(run, prep, cfg)
        metrics = {**build_metrics(prep, cfg, run, state, test), "world_size": ctx.world_size}
        metrics.update(evaluate_eval_set(root, prep, run, metrics))
        published = _publish(root, dataset, prep.release.version, to_bytes(cpu_state(run.model)), metrics)
        barrier(ctx)
    finally:
        shutdown(ctx)
    if root.exists(prep.run_dir):  # a fit of one epoch writes no checkpoint
        root.fs.rm(root.path(prep.run_dir), recursive=True)
    if root.is_local:
        # Leave models/ holding only models once no other run is checkpointing (else rmdir fails: fine).
        with contextlib.suppress(OSError):
            os.rmdir(root.path(RUNS_DIR))
    return published

"""Training the text classifier on a text release: fit, keep the best val epoch, test metrics, publish the model."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import nn

from corpus.releases.versions import load_release
from corpus.store import DataRoot
from training.comparison import compare_on_eval_set
from training.config import TrainConfig
from training.devices import pick_device
from training.loop import cpu_state, to_bytes
from training.text_model import ARCH, HashedNgramClassifier, compute_text_probs, featurize, to_bag_inputs
from training.train import EpochHook, _known_labels, _publish, compute_test_metrics

TASK = "text"


def text_rows(table: pa.Table) -> pa.Table:
    """The labeled text rows of a split."""
    mask = pc.and_(pc.equal(table.column("kind"), "text"), pc.is_valid(table.column("label")))
    return table.filter(pc.fill_null(mask, False))


def _targets(table: pa.Table, labels: list[str]) -> np.ndarray:
    index = {label: k for k, label in enumerate(labels)}
    return np.array([index[label] for label in table.column("label").to_pylist()], np.int64)


def _fit_epoch(model: HashedNgramClassifier, optimizers: list, x: Any, y: np.ndarray, cfg: TrainConfig, rng) -> float:
    """One pass over the train rows in shuffled batches; the mean loss."""
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    device = model.head.weight.device
    order = rng.permutation(len(y))
    total = 0.0
    for start in range(0, len(order), cfg.batch_size):
        batch = order[start : start + cfg.batch_size]
        for opt in optimizers:
            opt.zero_grad()
        logits = model(*to_bag_inputs(x[batch], device))
        loss = loss_fn(logits, torch.from_numpy(y[batch]).to(device))
        loss.backward()
        for opt in optimizers:
            opt.step()
        total += loss.item() * len(batch)
    return total / max(len(y), 1)


def _val_accuracy(model: HashedNgramClassifier, x: Any, y: np.ndarray) -> float | None:
    if not len(y):
        return None
    probs, _ = compute_text_probs(model, x, device=model.head.weight.device)
    return float((probs.argmax(1) == y).mean())


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, then restore the caller's count. A batch's sparse n-gram step is too
    small to split: 15 epochs on 80 pages took 43 s on 2 threads and 3.1 s on 1 (a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit_text_model(
    train: tuple[Any, np.ndarray], val: tuple[Any, np.ndarray], num_classes: int, cfg: TrainConfig, on_epoch=None
) -> tuple[HashedNgramClassifier, dict[str, Any]]:
    """Train on (features, targets) pairs; keep the epoch with the best val accuracy (the last one when val is
    empty), stop after cfg.patience epochs without a better one. Returns the model and the fit's record."""
    device = pick_device(cfg.device)
    lr = cfg.lr  # TrainConfig's default (3e-3) and 0.05 both learnt the sample topics in 15 epochs on 80 pages
    torch.manual_seed(cfg.seed)
    model = HashedNgramClassifier(num_classes).to(device)
    # SparseAdam for the n-gram table (sparse gradients), AdamW with weight decay for the head.
    optimizers = [
        torch.optim.SparseAdam(list(model.bag.parameters()), lr=lr),
        torch.optim.AdamW(model.head.parameters(), lr=lr, weight_decay=cfg.weight_decay),
    ]
    rng = np.random.default_rng(cfg.seed)
    with _one_thread() if device.type == "cpu" else contextlib.nullcontext():
        history, best = _fit_epochs(model, optimizers, train, val, cfg, rng, on_epoch)
    fit = {"val_accuracy": best["val"], "best_epoch": best["epoch"], "epochs_run": len(history), "history": history}
    model.load_state_dict(best["state"])
    fit["early_stopped"] = len(history) < cfg.epochs
    return model, {**fit, "device": str(device), "lr": lr}


def _fit_epochs(model, optimizers, train, val, cfg: TrainConfig, rng, on_epoch) -> tuple[list, dict]:
    """The epochs of fit_text_model: (their history, the best epoch's {"val", "epoch", "state"})."""
    best, best_epoch, best_state, history, stale = None, 0, cpu_state(model), [], 0
    for epoch in range(1, cfg.epochs + 1):
        started = time.perf_counter()
        loss = _fit_epoch(model, optimizers, train[0], train[1], cfg, rng)
        val_acc = _val_accuracy(model, *val)
        record = {"epoch": epoch, "train_loss": loss, "val_accuracy": val_acc, "images": len(train[1])}
        record["seconds"] = time.perf_counter() - started
        history.append(record)
        if on_epoch:
            on_epoch(record)
        if val_acc is None or best is None or val_acc > best:
            best, best_epoch, best_state, stale = val_acc, epoch, cpu_state(model), 0
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    return history, {"val": best, "epoch": best_epoch, "state": best_state}


def train_text_model(
    root: DataRoot,
    dataset: str,
    version: str = "latest",
    cfg: TrainConfig | None = None,
    on_epoch: EpochHook | None = None,
) -> dict:
    """Train the hashed n-gram classifier on text release `version` of `dataset` (loaded verified), publish it
    under models/ as the release's next model version (metadata task "text") and return its metrics.

    The label list is train's labels, sorted; val and test rows with other labels are counted, not scored."""
    cfg = cfg or TrainConfig()
    release = load_release(root, dataset, version)
    train_t = text_rows(release.train)
    if train_t.num_rows == 0:
        raise ValueError(f"release {dataset}/{release.version} has no labeled text records in train")
    labels = sorted(set(train_t.column("label").to_pylist()))
    val_t, val_unknown = _known_labels(text_rows(release.val), labels)
    test_t, test_unknown = _known_labels(text_rows(release.test), labels)
    xs = {name: featurize(t) for name, t in (("train", train_t), ("val", val_t), ("test", test_t))}
    ys = {"train": _targets(train_t, labels), "val": _targets(val_t, labels), "test": _targets(test_t, labels)}
    model, fit = fit_text_model((xs["train"], ys["train"]), (xs["val"], ys["val"]), len(labels), cfg, on_epoch)
    probs, _ = compute_text_probs(model, xs["test"], device=fit["device"])
    loss = float(nn.functional.nll_loss(torch.log(torch.from_numpy(probs) + 1e-9), torch.from_numpy(ys["test"])))
    test = compute_test_metrics(probs, ys["test"], loss if len(probs) else None, labels)
    seconds = sum(h["seconds"] for h in fit["history"])
    metrics = {
        "task": TASK,
        "dataset": dataset,
        "release": release.version,
        "release_id": release.manifest.get("release_id"),
        "release_manifest_sha256": {k: v["sha256"] for k, v in release.manifest.get("files", {}).items()},
        "labels": labels,
        "model": {
            "arch": ARCH,
            "num_classes": len(labels),
            "hash_bits": model.hash_bits,
            "dim": model.embedding_dim,
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        "recipe": None,
        "config": cfg.model_dump(),
        "precision": "fp32",
        "effective_batch_size": cfg.batch_size,
        **fit,
        **test,
        "train_seconds": round(seconds, 3),
        "train_images_per_s": round(len(ys["train"]) * len(fit["history"]) / seconds, 1) if seconds > 0 else None,
        "n_train": len(ys["train"]),
        "n_val": len(ys["val"]),
        "n_test": len(ys["test"]),
        "n_eval_unknown_label": val_unknown + test_unknown,
        "created_at": datetime.now(UTC).isoformat(timespec="microseconds"),
    }
    # The fixed eval set, scored by this model and every earlier version's newest one (comparison's one path).
    metrics.update(compare_on_eval_set(root, release, model, metrics, device=str(fit["device"])))
    return _publish(root, dataset, release.version, to_bytes(cpu_state(model)), metrics)

"""The fit loop: a model and its optimizer on a device, epochs with checkpoint/resume, best-val selection."""

from __future__ import annotations

import contextlib
import copy
import io
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from corpus.store import DataRoot
from training.backbones import create_model
from training.config import TrainConfig
from training.data import EpochSampler
from training.devices import pick_memory_format, pick_precision
from training.evaluation import compute_confusion
from training.transfer import freeze, make_scheduler, set_train_mode, trainable_parameters
from training.weights import FitReport, LoadedWeights, fit_weights


class Run:
    """Everything the loop needs on a device: model, optimizer, schedule, loss scaling, autocast.

    `model` is the plain network (what is saved and evaluated); `net` is what training calls forward on,
    the same module or a wrapper around it (DistributedDataParallel)."""

    def __init__(
        self,
        cfg: TrainConfig,
        num_classes: int,
        device: torch.device,
        *,
        weights: LoadedWeights | None = None,
        steps_per_epoch: int = 1,
    ) -> None:
        self.cfg, self.device = cfg, device
        self.amp_dtype = pick_precision(device, cfg.precision)
        self.memory_format = pick_memory_format(device, cfg.channels_last)
        self.model = create_model(cfg.backbone, num_classes, width=cfg.width, dropout=cfg.dropout)
        self.weights_report: FitReport | None = fit_weights(self.model, weights) if weights is not None else None
        self.frozen = freeze(self.model, cfg.transfer)
        self.model.to(device, memory_format=self.memory_format)
        self.net: nn.Module = self.model
        self.compiled: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.compile_error: str | None = None
        self.optimizer = torch.optim.AdamW(trainable_parameters(self.model), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler, self.step_per_batch = make_scheduler(self.optimizer, cfg, steps_per_epoch)
        # Loss scaling is only needed for fp16; bf16 has fp32's exponent range.
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)

    def enable_compile(self) -> None:
        """torch.compile `net` for training; a failure (here or at the first compiled call) falls back to eager."""
        try:
            self.compiled = torch.compile(self.net)
        except Exception as e:  # no compiler toolchain, unsupported platform or Python: train eagerly
            self._give_up_compile(e)

    def _give_up_compile(self, e: Exception) -> None:
        self.compiled, self.compile_error = None, f"{type(e).__name__}: {e}"[:500]
        warnings.warn(f"torch.compile failed, training eagerly: {self.compile_error}", RuntimeWarning, stacklevel=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Training logits: the compiled net when compiling works, else `net` eagerly."""
        if self.compiled is not None:
            try:
                return self.compiled(x)
            except Exception as e:  # compilation happens lazily, at the first call of each new input shape
                self._give_up_compile(e)
        return self.net(x)

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
        net, acc = self.net, self.cfg.accumulate
        set_train_mode(self.model, self.frozen)
        self.optimizer.zero_grad(set_to_none=True)
        n_batches = len(loader)
        # The loss sum stays on the device: a .item() per step would wait for the GPU at every step.
        total_loss, seen, wait = torch.zeros((), device=self.device), 0, 0.0
        started = tick = time.perf_counter()
        for step, (x, y) in enumerate(loader):
            wait += time.perf_counter() - tick
            x, y = self.to_device(x, y)
            steps_now = (step + 1) % acc == 0 or step + 1 == n_batches
            # Under DDP, batches that only accumulate skip the gradient all-reduce (one per optimizer step).
            quiet = net.no_sync() if not steps_now and hasattr(net, "no_sync") else contextlib.nullcontext()
            with quiet:
                with self.autocast():
                    logits = self.forward(x)
                loss = self.loss(logits.float(), y)
                # Average over the batches of this step's group (the last group may be shorter).
                group = min(acc, n_batches - (step // acc) * acc)
                self.scaler.scale(loss / group).backward()
            if steps_now:
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                if self.step_per_batch:
                    self.scheduler.step()
            total_loss += loss.detach() * len(y)
            seen += len(y)
            tick = time.perf_counter()
        if not self.step_per_batch:
            self.scheduler.step()
        mean_loss = total_loss.item() / max(seen, 1)  # waits for the epoch's last steps: time them too
        elapsed = time.perf_counter() - started
        return {"train_loss": mean_loss, "seconds": elapsed, "data_wait_seconds": wait, "images": seen}

    def loss(self, logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """The training loss: cross-entropy over one class per image (a multi-label run overrides it)."""
        return nn.functional.cross_entropy(logits, y, reduction=reduction)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities of `logits`: a softmax over the classes."""
        return torch.softmax(logits, 1)

    def val_score(self, probs: np.ndarray, targets: np.ndarray) -> float | None:
        """The val score the best checkpoint is chosen by (higher = better): accuracy of the top class."""
        return accuracy(compute_confusion(targets, probs.argmax(1), self.model.num_classes))

    @torch.no_grad()
    def predict(self, loader: DataLoader) -> tuple[np.ndarray, np.ndarray, float]:
        """Probabilities (N, K), targets and mean loss of the model over `loader` (softmax and cross-entropy
        unless a subclass says otherwise)."""
        self.model.eval()
        probs, targets = [], []
        loss_sum, n = 0.0, 0
        for x, y in loader:
            x, y = self.to_device(x, y)
            with self.autocast():
                logits = self.model(x)
            logits = logits.float()
            loss_sum += self.loss(logits, y, reduction="sum").item()
            n += len(y)
            probs.append(self.probabilities(logits).cpu().numpy())
            targets.append(y.cpu().numpy())
        k = self.model.num_classes
        return (
            np.concatenate(probs) if probs else np.zeros((0, k)),
            np.concatenate(targets) if targets else np.zeros(0, np.int64),
            loss_sum / max(n, 1),
        )


def accuracy(cm: np.ndarray) -> float | None:
    """Share of the confusion matrix on its diagonal; None for an empty one."""
    total = int(cm.sum())
    return float(np.trace(cm) / total) if total else None


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's state_dict on the CPU (a snapshot that later steps do not change)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def cpu_copy(obj: Any) -> Any:
    """A deep copy of a state_dict-like nest (dicts, lists, tensors, plain values) with every tensor cloned on
    the CPU: a snapshot that the optimizer's next steps do not change."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(cpu_copy(v) for v in obj)
    return copy.deepcopy(obj)


def to_bytes(obj: Any) -> bytes:
    """`torch.save` of `obj`, as bytes."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


class CheckpointWriter:
    """Serialises and writes checkpoints on a background thread, one at a time, so the next epoch trains
    meanwhile: `torch.save` of a ResNet-18 checkpoint (~134 MB with AdamW's moments) and its write took
    0.9-1.9 s on this machine, against ~0.07 s for the CPU snapshot the thread is given (bench/TRAIN.md)."""

    def __init__(self, root: DataRoot, path: str) -> None:
        self.root, self.path = root, path
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, snapshot: dict[str, Any]) -> None:
        """Write `snapshot` (nothing in it may change afterwards) once the previous write is done."""
        self.wait()
        self._thread = threading.Thread(target=self._write, args=(snapshot,), name="flywheel-checkpoint")
        self._thread.start()

    def _write(self, snapshot: dict[str, Any]) -> None:
        try:
            self.root.write_bytes(self.path, to_bytes(snapshot))
        except BaseException as e:  # re-raised on the training thread by wait()
            self._error = e

    def wait(self) -> None:
        """Block until the pending write is on storage; raise its error, if it failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def load_checkpoint(root: DataRoot, path: str) -> dict[str, Any] | None:
    """The checkpoint at `path` (weights_only), or None when there is none."""
    if not root.exists(path):
        return None
    return torch.load(io.BytesIO(root.read_bytes(path)), map_location="cpu", weights_only=True)


@dataclass
class FitState:
    """Where a fit stands: the best checkpoint so far, early stopping and the per-epoch history."""

    best_state: dict[str, torch.Tensor]
    best_score: list[float] | None = None
    best_val: float | None = None
    best_epoch: int = 0
    stopped: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int | None = None

    @property
    def epochs_run(self) -> int:
        return max([h["epoch"] for h in self.history], default=0)

    def checkpoint(self, run: Run, epoch: int) -> dict[str, Any]:
        """Everything a rerun needs to continue after `epoch` exactly as this one would: a snapshot on the
        CPU that later steps do not change (so it can be written while they run)."""
        device = run.device
        # When this epoch is the best one, its snapshot is the model: write (and copy) the weights once.
        same = self.best_epoch == epoch
        return {
            "epoch": epoch,
            "model": self.best_state if same else cpu_state(run.model),
            "optimizer": cpu_copy(run.optimizer.state_dict()),
            "scheduler": cpu_copy(run.scheduler.state_dict()),
            "scaler": cpu_copy(run.scaler.state_dict()),
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "best_state": None if same else self.best_state,
            "best_score": self.best_score,
            "best_val": self.best_val,
            "best_epoch": self.best_epoch,
            "stopped": self.stopped,
            "history": copy.deepcopy(self.history),
        }

    @classmethod
    def resume(cls, run: Run, state: dict[str, Any]) -> FitState:
        """Restore `run` (model, optimizer, schedule, scaler, RNG) from a checkpoint; the state it held."""
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
        run.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        if run.device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], run.device)
        return cls(
            best_state=state["model"] if state["best_state"] is None else state["best_state"],
            best_score=state["best_score"],
            best_val=state["best_val"],
            best_epoch=state["best_epoch"],
            stopped=state["stopped"],
            history=state["history"],
            resumed_from=state["epoch"],
        )

    def observe(self, run: Run, epoch: int, val: tuple[float, float] | None, patience: int) -> None:
        """Keep the model when its val (accuracy, loss) beats the best (accuracy first; on a tie, common on
        small val sets, the lower loss); stop after `patience` epochs without one. Without val (None), the
        last epoch is kept and there is no early stopping."""
        if val is None:
            self.best_state, self.best_epoch = cpu_state(run.model), epoch
            return
        val_acc, val_loss = val
        if self.best_score is None or (val_acc, -val_loss) > tuple(self.best_score):
            self.best_score, self.best_val, self.best_epoch = [val_acc, -val_loss], val_acc, epoch
            self.best_state = cpu_state(run.model)
        elif epoch - self.best_epoch >= patience:
            self.stopped = True


def fit(
    run: Run,
    train_loader: DataLoader,
    sampler: EpochSampler,
    val_loader: DataLoader | None,
    *,
    root: DataRoot,
    checkpoint_path: str,
    resume: bool,
    is_main: bool = True,
    agree: Callable[[bool], bool] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> FitState:
    """Train `run` for up to cfg.epochs, checkpointing to `checkpoint_path` after every epoch but the last (and,
    with `resume`, continuing from a checkpoint found there); `val_loader` None means no val split. The
    returned state holds the best model's weights; `run.model` is left at the last epoch's. `on_epoch`
    gets each epoch's history record (epoch, train_loss, val_accuracy, ...) as it ends: progress.

    A checkpoint is written on a background thread while the next epoch trains (`CheckpointWriter`); the
    fit returns (or raises) only once it is on storage. After the last epoch (cfg.epochs reached, or early
    stopping) none is written: the caller holds the result, and a crash before it is published costs one
    epoch on the rerun, instead of a full checkpoint write at the end of every fit.

    Under DDP only the main process (`is_main`) writes checkpoints, and `agree` makes its early-stopping
    decision every process's."""
    cfg = run.cfg
    state = load_checkpoint(root, checkpoint_path) if resume else None
    fit_state = FitState.resume(run, state) if state is not None else FitState(best_state=cpu_state(run.model))
    writer = CheckpointWriter(root, checkpoint_path)
    try:
        for epoch in range((fit_state.resumed_from or 0) + 1, cfg.epochs + 1):
            if fit_state.stopped:
                break
            record = _run_epoch(run, fit_state, epoch, train_loader, sampler, val_loader, agree)
            if is_main:
                if epoch < cfg.epochs and not fit_state.stopped:
                    writer.submit(fit_state.checkpoint(run, epoch))
                if on_epoch is not None:
                    on_epoch(record)
    except BaseException:
        with contextlib.suppress(Exception):  # the fit's own error is the one to see
            writer.wait()
        raise
    writer.wait()
    return fit_state


def _run_epoch(
    run: Run,
    fit_state: FitState,
    epoch: int,
    train_loader: DataLoader,
    sampler: EpochSampler,
    val_loader: DataLoader | None,
    agree: Callable[[bool], bool] | None,
) -> dict[str, Any]:
    """Train and validate one epoch, update `fit_state` (best model, early stopping, history); its record."""
    sampler.set_epoch(epoch)
    stats = run.train_epoch(train_loader)
    record: dict[str, Any] = {"epoch": epoch, **stats, "lr": run.scheduler.get_last_lr()[0]}
    val = None
    if val_loader is not None:
        probs, targets, val_loss = run.predict(val_loader)
        val = (run.val_score(probs, targets), val_loss)
        record.update(val_accuracy=val[0], val_loss=val_loss)
    fit_state.observe(run, epoch, val, run.cfg.patience)
    if agree is not None:
        fit_state.stopped = agree(fit_state.stopped)
    fit_state.history.append(record)
    return record

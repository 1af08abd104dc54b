"""Transfer learning: which parts of a model a transfer mode freezes, how they stay frozen, and the lr schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from training.config import TrainConfig


def frozen_modules(model: nn.Module, mode: str) -> list[nn.Module]:
    """The modules `mode` freezes: none (fine-tune), the stem (freeze-stem: model.stem_names) or every
    top-level module with parameters but the head (linear-probe: model.head_name)."""
    if mode == "fine-tune":
        return []
    if mode == "freeze-stem":
        return [model.get_submodule(name) for name in model.stem_names]
    if mode == "linear-probe":
        return [
            m for name, m in model.named_children() if name != model.head_name and any(True for _ in m.parameters())
        ]
    raise ValueError(f"unknown transfer mode {mode!r}; use fine-tune, linear-probe or freeze-stem")


def freeze(model: nn.Module, mode: str) -> list[nn.Module]:
    """Switch off gradients in the modules `mode` freezes; returns them (for set_train_mode)."""
    frozen = frozen_modules(model, mode)
    for module in frozen:
        module.requires_grad_(False)
    return frozen


def set_train_mode(model: nn.Module, frozen: list[nn.Module]) -> None:
    """Training mode, except the frozen modules: their BatchNorm keeps the pretrained running statistics."""
    model.train()
    for module in frozen:
        module.eval()


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters the optimizer updates (frozen ones are left out, so weight decay never touches them)."""
    return [p for p in model.parameters() if p.requires_grad]


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> tuple[torch.optim.lr_scheduler.LRScheduler, bool]:
    """The lr schedule of `cfg.lr_schedule` and whether it steps per optimizer step (else per epoch).

    `steps_per_epoch` is optimizer steps, i.e. batches / accumulate rounded up."""
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs), False
    if cfg.lr_schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0), False
    if cfg.lr_schedule == "one-cycle":
        # OneCycleLR's own defaults: 30% warm-up from lr/25, cosine down to lr/1e4.
        # +1: the loop steps the schedule after every optimizer step, the last one included.
        total = cfg.epochs * max(1, steps_per_epoch) + 1
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total), True
    raise ValueError(f"unknown lr_schedule {cfg.lr_schedule!r}")


def optimizer_steps(n_batches: int, accumulate: int) -> int:
    """Optimizer steps in an epoch of `n_batches` with gradient accumulation over `accumulate` batches."""
    return math.ceil(n_batches / accumulate)

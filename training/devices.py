"""Devices: the torch device, autocast precision and loader workers a run uses, and its DataLoaders."""

from __future__ import annotations

import os

import torch
from torch.utils.data import DataLoader, Dataset

from training.data import EpochSampler

# torchvision's reference classification script defaults to 16 loader workers; past that, small images
# rarely decode faster and each worker holds its own copy of the split.
MAX_AUTO_WORKERS = 16


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


def pick_memory_format(device: torch.device, pref: str = "auto") -> torch.memory_format:
    """The memory format of a run's model and batches: channels-last for "on" and "auto" (on CUDA NHWC
    convolutions feed the tensor cores; on CPU a ResNet-18 train step measured 1.21x faster with it, ABBA
    in one run, bench/TRAIN.md), contiguous (NCHW) for "off"."""
    if pref not in ("auto", "on", "off"):
        raise ValueError(f"unknown channels_last {pref!r}; use auto, on or off")
    if pref in ("on", "auto") and device.type in ("cuda", "cpu"):
        return torch.channels_last
    return torch.contiguous_format


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
    drop_last: bool = False,
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
        drop_last=drop_last,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        multiprocessing_context=worker_start if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
    )

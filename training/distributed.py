"""Distributed data parallel: the process group under torchrun, each rank's share of an epoch, rank-0 decisions.

Under `torchrun --nproc_per_node=N` (RANK, WORLD_SIZE, LOCAL_RANK in the environment) every process trains
the same model on its own shard of each epoch; DistributedDataParallel averages the gradients. Rank 0
alone writes checkpoints and publishes; its early-stopping decision is broadcast so every rank stops on
the same epoch (a rank that stopped alone would leave the others waiting in an all-reduce).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from training.data import EpochSampler
from training.devices import pick_device


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job: rank, world size, its device and the backend (None: one process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_pref: str = "auto") -> tuple[DistContext, torch.device]:
    """The job this process is part of, and its device; starts the process group when torchrun launched
    more than one process (nccl on CUDA, gloo on CPU). One process: DistContext() and pick_device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(device_pref)
    if world <= 1:
        return DistContext(), device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        # One GPU per process: torchrun numbers the processes of a node 0..N-1 as LOCAL_RANK.
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend=backend)
    return DistContext(rank, world, local_rank, backend, owns), device


def wrap_model(model: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    """`model` in DistributedDataParallel when the job has several processes (else `model` itself).

    DDP broadcasts rank 0's weights at construction, so every rank starts identical."""
    if not ctx.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def agree(flag: bool, ctx: DistContext) -> bool:
    """Rank 0's value of `flag`, on every rank."""
    if not ctx.enabled:
        return flag
    box = [flag]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    """Destroy the process group if init_distributed started it (one a caller started is theirs to end)."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


class ShardedEpochSampler(EpochSampler):
    """EpochSampler's permutation of an epoch, cut into `world_size` disjoint, equal shards; this rank's.

    Like DistributedSampler with drop_last: the permutation's tail past a multiple of world_size is left
    out (a different tail each epoch, as the permutation changes), so every rank runs the same number of
    batches and no image is seen twice in an epoch."""

    def __init__(self, n: int, seed: int, rank: int, world_size: int, shuffle: bool = True) -> None:
        super().__init__(n, seed, shuffle)
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return self.n // self.world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        keys = list(super().__iter__())[: len(self) * self.world_size]
        return iter(keys[self.rank :: self.world_size])


def epoch_sampler(n: int, seed: int, ctx: DistContext) -> EpochSampler:
    """The train sampler for this process: the whole epoch, or its rank's shard under DDP."""
    if ctx.enabled:
        return ShardedEpochSampler(n, seed, ctx.rank, ctx.world_size)
    return EpochSampler(n, seed, shuffle=True)

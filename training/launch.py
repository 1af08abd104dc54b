"""Training on several devices from one caller: train_model under torchrun in subprocesses, rank 0's metrics back.

The train flow runs in one process; DDP needs one process per device. `train_distributed` starts
`python -m torch.distributed.run --standalone --nproc_per_node=N -m training.launch ...`; every process
runs `train_model` (training.distributed joins them: NCCL on GPUs, gloo on CPU) and rank 0 writes the
published model's metrics to a file the caller reads. Each epoch line of rank 0 is passed to `on_line`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from training.config import TrainConfig

_PROJECT_DIR = Path(__file__).resolve().parents[1]
EPOCH_PREFIX = "flywheel-epoch "


def check_devices(cfg: TrainConfig) -> None:
    """Refuse, with one line, a device count the machine cannot serve (CUDA: one GPU per process)."""
    wants_cuda = cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available())
    if wants_cuda and cfg.devices > torch.cuda.device_count():
        raise ValueError(f"devices={cfg.devices} but this machine has {torch.cuda.device_count()} CUDA device(s)")


def torchrun_command(root_url: str, dataset: str, version: str, config_path: str, out_path: str, n: int) -> list[str]:
    """The torchrun command line of a DDP training job of `n` processes on this machine."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # a rendezvous on this machine, on a free port: no endpoint to configure
        f"--nproc_per_node={n}",
        "-m",
        "training.launch",
        root_url,
        dataset,
        version,
        config_path,
        out_path,
    ]


def train_distributed(
    root_url: str, dataset: str, version: str, cfg: TrainConfig, on_line: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Train on `cfg.devices` processes under torchrun and return rank 0's metrics (the published model's).

    RuntimeError with the job's last output lines when torchrun fails."""
    check_devices(cfg)
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    # The workers import the same code as this process, wherever it was imported from.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PROJECT_DIR), os.environ.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory(prefix="flywheel-ddp-") as work:
        config_path, out_path = os.path.join(work, "config.json"), os.path.join(work, "metrics.json")
        Path(config_path).write_text(cfg.model_dump_json())
        cmd = torchrun_command(root_url, dataset, version, config_path, out_path, cfg.devices)
        tail: deque[str] = deque(maxlen=40)
        with subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=_PROJECT_DIR
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                tail.append(line.rstrip())
                if on_line and line.startswith(EPOCH_PREFIX):
                    on_line(line[len(EPOCH_PREFIX) :].rstrip())
        if proc.returncode != 0 or not os.path.exists(out_path):
            raise RuntimeError(f"torchrun training failed (exit {proc.returncode}):\n" + "\n".join(tail))
        return json.loads(Path(out_path).read_text())


def _main(argv: list[str]) -> None:
    """One torchrun process: train, and on rank 0 write the metrics where the launcher reads them."""
    from corpus.store import open_data_root
    from training.train import train_model

    parser = argparse.ArgumentParser(prog="python -m training.launch")
    for name in ("root_url", "dataset", "version", "config_path", "out_path"):
        parser.add_argument(name)
    args = parser.parse_args(argv)
    cfg = TrainConfig.model_validate_json(Path(args.config_path).read_text())
    is_main = os.environ.get("RANK", "0") == "0"

    def show(record: dict[str, Any]) -> None:
        if is_main:
            print(EPOCH_PREFIX + json.dumps(record, default=str), flush=True)

    metrics = train_model(open_data_root(args.root_url), args.dataset, args.version, cfg, on_epoch=show)
    if is_main:
        tmp = args.out_path + ".tmp"
        Path(tmp).write_text(json.dumps(metrics, default=str))
        os.replace(tmp, args.out_path)


if __name__ == "__main__":
    _main(sys.argv[1:])

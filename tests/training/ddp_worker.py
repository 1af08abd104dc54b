"""One torchrun process of the DDP test: trains on a prepared data root and writes which train keys it saw.

Not a test module (pytest collects test_*.py only): tests/training/test_distributed.py launches it."""

from __future__ import annotations

import json
import os
import sys

import torch

import training.data as data_module
from corpus.store import DataRoot
from training.config import TrainConfig
from training.train import train_model

SEEN: list[list[int]] = []
_original = data_module.ReleaseImageDataset.__getitem__


def _recording(self, key):
    if self.seed is not None and isinstance(key, tuple):  # the train split (val/test have no seed)
        SEEN.append(list(key))
    return _original(self, key)


def main() -> None:
    root_url, out_dir = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    data_module.ReleaseImageDataset.__getitem__ = _recording
    cfg = TrainConfig(image_size=32, epochs=2, batch_size=4, width=8, num_workers=0, device="cpu")
    result = train_model(DataRoot(root_url), "shapes", "latest", cfg)
    rank = int(os.environ["RANK"])
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(
            {"rank": rank, "model_version": result["model_version"], "seen": SEEN, "result": result}, f, default=str
        )


if __name__ == "__main__":
    main()

"""Training-loop benchmark: Flywheel's fit loop against a plain torch loop, same model, data and transforms.

Both sides train the same network (default ResNet-18, from the same seed) on the same release's train split
(encoded JPEGs) through the same albumentations pipeline (the plain side rebuilds it with A.from_dict from
Flywheel's serialisation), batch size, AdamW settings and precision. Flywheel runs `training.loop.fit`
(ReleaseImageDataset + EpochSampler + make_loader, Run.train_epoch, the per-epoch best-state copy and
checkpoint write to a data root, channels-last as TrainConfig defaults it: on CUDA only). The peer is the loop a
user writes: a Dataset doing cv2.imdecode + the Compose, a DataLoader with shuffle, forward, cross-entropy,
backward, step.
Figures are training images/s, median of the repeats (sides interleaved ABBA, after one untimed run of each);
ratio = Flywheel over plain.

Run: `make bench-train` (or `QUICK=1 make bench-train`), or `.venv/bin/python bench/train.py [--quick]`.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import albumentations as A
import cv2
import numpy as np
import torch
from loader import make_records
from torch import nn
from torch.utils.data import DataLoader, Dataset

from corpus.releases.build import build_release
from corpus.releases.config import ReleaseConfig
from corpus.releases.versions import load_release
from corpus.store import DataRoot
from training.augment import build_recipe, serialize
from training.backbones import create_model
from training.config import TrainConfig
from training.data import EpochSampler, ReleaseImageDataset
from training.devices import make_loader, pick_device, pick_memory_format
from training.loop import Run, fit


class PlainDataset(Dataset):
    """The peer's dataset: decode and transform, nothing else."""

    def __init__(self, images: list[bytes], targets: list[int], transform: A.Compose) -> None:
        self.images, self.targets, self.transform = images, targets, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        arr = cv2.cvtColor(cv2.imdecode(np.frombuffer(self.images[i], np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        out = self.transform(image=arr)["image"]
        return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1))), self.targets[i]


def plain_epochs(model: nn.Module, loader: DataLoader, opt: torch.optim.Optimizer, epochs: int, device) -> int:
    """The peer's loop; returns images trained on."""
    model.train()
    n = 0
    for _ in range(epochs):
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n += len(y)
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", default=os.environ.get("QUICK", "") not in ("", "0"))
    parser.add_argument("--images", type=int, default=None, help="train images (default 1024, quick 256)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per side (default 3, quick 2)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per timed run")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--side", type=int, default=96, help="source image side in pixels")
    parser.add_argument("--size", type=int, default=64, help="training image side")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers, both sides")
    parser.add_argument("--channels-last", type=int, default=None, help="Flywheel side: 1/0 (default: auto)")
    parser.add_argument(
        "--channels-last-ab",
        action="store_true",
        help="also run Flywheel with channels-last forced on and off, as sides of the same ABBA run",
    )
    args = parser.parse_args()
    n_images = args.images or (256 if args.quick else 1024)
    repeats = args.repeats or (2 if args.quick else 3)
    device = pick_device("auto")
    cfg = TrainConfig(
        backbone=args.backbone,
        image_size=args.size,
        batch_size=args.batch_size,
        epochs=args.epochs,
        num_workers=args.workers,
        resume=False,
    )

    if args.channels_last is not None:
        cfg = cfg.model_copy(update={"channels_last": "on" if args.channels_last else "off"})

    channels_last = pick_memory_format(device, cfg.channels_last) == torch.channels_last

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        root = DataRoot(tmp)
        build_release(root, "bench", make_records(n_images, args.side), ReleaseConfig(train=1.0, val=0.0, test=0.0))
        release = load_release(root, "bench")
        train = release.train
        labels = sorted(set(train.column("label").to_pylist()))
        train_tf, _ = build_recipe(release.augmentation, args.size, seed=0)
        images, names = train.column("image").to_pylist(), train.column("label").to_pylist()
        peer_ds = PlainDataset(images, [labels.index(n) for n in names], A.from_dict(serialize(train_tf)))
        loader_kw = {
            "num_workers": args.workers,
            "pin_memory": device.type == "cuda",
            "persistent_workers": args.workers > 0,
        }

        def flywheel(fit_cfg: TrainConfig = cfg) -> int:
            torch.manual_seed(0)
            ds = ReleaseImageDataset(train, labels, build_recipe(release.augmentation, args.size, seed=0)[0], seed=0)
            sampler = EpochSampler(len(ds), seed=0)
            loader = make_loader(ds, args.batch_size, device=device, workers=args.workers, sampler=sampler)
            run = Run(fit_cfg, len(labels), device, steps_per_epoch=len(loader))
            state = fit(
                run, loader, sampler, None, root=root, checkpoint_path="models/.runs/bench/last.pt", resume=False
            )
            return sum(h["images"] for h in state.history)

        def plain() -> int:
            torch.manual_seed(0)
            model = create_model(args.backbone, len(labels), width=cfg.width, dropout=cfg.dropout).to(device)
            opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            loader = DataLoader(peer_ds, batch_size=args.batch_size, shuffle=True, **loader_kw)
            return plain_epochs(model, loader, opt, args.epochs, device)

        sides: tuple = (("flywheel", flywheel), ("plain", plain))
        if args.channels_last_ab:
            on, off = (cfg.model_copy(update={"channels_last": v}) for v in ("on", "off"))
            sides += (("fw-cl-on", lambda: flywheel(on)), ("fw-cl-off", lambda: flywheel(off)))
        results: dict[str, list[float]] = {name: [] for name, _ in sides}
        # One untimed run of each side first: the first ResNet fit of a process was measured 3x slower than the
        # next ones (oneDNN kernel set-up, allocator growth), and it used to land on whichever side ran first.
        for _, fn in sides:
            fn()
        for repeat in range(repeats):
            # ABBA order, so neither side always runs right after the other's (warm caches, turbo, load swings).
            for name, fn in sides if repeat % 2 == 0 else sides[::-1]:
                started = time.perf_counter()
                n = fn()
                results[name].append(n / (time.perf_counter() - started))

    med = {k: statistics.median(v) for k, v in results.items()}
    print(
        f"# train benchmark: {args.backbone}, {n_images} JPEG {args.side}px -> {args.size}px train-basic, "
        f"batch {args.batch_size}, channels_last {cfg.channels_last} ({int(channels_last)} on {device.type}), "
        f"{args.epochs} epochs per run, {repeats} runs per side, workers {args.workers}"
    )
    print(
        f"# {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} "
        f"threads), device {device}"
    )
    for name, values in results.items():
        print(f"{name:<10}{med[name]:>10.1f} images/s  (min {min(values):.1f}, max {max(values):.1f})")
    ratio = med["flywheel"] / med["plain"]
    if args.channels_last_ab:
        print(f"channels-last on / off (Flywheel, same run): {med['fw-cl-on'] / med['fw-cl-off']:.3f}")
    print(
        f"bench train: device={device.type} channels_last={int(channels_last)} backbone={args.backbone} "
        f"flywheel={med['flywheel']:.1f} "
        f"plain={med['plain']:.1f} images/s ratio={ratio:.3f}"
    )


if __name__ == "__main__":
    main()

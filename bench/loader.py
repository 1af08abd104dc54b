"""Input-pipeline benchmark: Flywheel's release loader against a plain loop over the same albumentations transforms.

Both sides read the same release's train split (encoded JPEGs) and produce batches of CHW float32 tensors
through the release's default recipe (train-basic: RandomResizedCrop, HorizontalFlip, ColorJitter,
Normalize). The peer is the library's own cost: a for-loop doing cv2.imdecode + the same albumentations
Compose (rebuilt with A.from_dict from Flywheel's serialisation, so the transforms are identical) +
torch.stack. Flywheel runs ReleaseImageDataset + EpochSampler + DataLoader with 0, 1 and 2 workers
(persistent, started before timing). Figures are images/s, median of the repeats; ratio = Flywheel with
0 workers over the plain loop (same single core each; higher is better, 1.0 = no overhead).

Run: `make bench-loader` (or `QUICK=1 make bench-loader`), or `.venv/bin/python bench/loader.py [--quick]`.
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

# One thread per process on both sides, so the comparison is core for core (set before cv2/torch load).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENCV_FOR_THREADS_NUM", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import albumentations as A
import cv2
import numpy as np
import pyarrow as pa
import torch

from corpus.releases.build import build_release
from corpus.releases.config import ReleaseConfig
from corpus.releases.versions import load_release
from corpus.schema import conform, make_record_id
from corpus.store import DataRoot
from training.augment import build_recipe, serialize
from training.data import EpochSampler, ReleaseImageDataset
from training.devices import make_loader

CLASSES = ("circle", "square", "triangle", "cross")


def make_records(n: int, side: int, seed: int = 0) -> pa.Table:
    """`n` labeled JPEG image records (`side` px, a coloured shape on noise), like small web images."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = CLASSES[i % len(CLASSES)]
        img = rng.integers(0, 80, size=(side, side, 3), dtype=np.uint8)
        colour = tuple(int(c) for c in rng.integers(80, 255, size=3))
        r = int(rng.integers(side // 6, side // 3))
        cx, cy = (int(v) for v in rng.integers(r, side - r, size=2))
        if label == "circle":
            cv2.circle(img, (cx, cy), r, colour, -1)
        elif label == "square":
            cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), colour, -1)
        elif label == "triangle":
            cv2.fillPoly(img, [np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)], colour)
        else:
            cv2.line(img, (cx - r, cy - r), (cx + r, cy + r), colour, 4)
            cv2.line(img, (cx - r, cy + r), (cx + r, cy - r), colour, 4)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        data = buf.tobytes()
        rows.append(
            {"record_id": make_record_id(data), "kind": "image", "image": data, "label": label, "label_source": "human"}
        )
    return conform(pa.Table.from_pylist(rows))


def plain_loop(images: list[bytes], transform: A.Compose, batch_size: int) -> int:
    """The peer: decode, transform and batch with nothing else around it. Returns images produced."""
    done, batch = 0, []
    for data in images:
        arr = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        out = transform(image=arr)["image"]
        batch.append(torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1))))
        if len(batch) == batch_size:
            done += len(torch.stack(batch))
            batch = []
    if batch:
        done += len(torch.stack(batch))
    return done


def flywheel_epoch(loader, sampler: EpochSampler, epoch: int) -> int:
    sampler.set_epoch(epoch)
    return sum(len(x) for x, _ in loader)


def timed(fn) -> tuple[float, int]:
    started = time.perf_counter()
    n = fn()
    return time.perf_counter() - started, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", default=os.environ.get("QUICK", "") not in ("", "0"))
    parser.add_argument("--images", type=int, default=None, help="train-split images (default 3000, quick 800)")
    parser.add_argument("--repeats", type=int, default=None, help="timed passes per setting (default 5, quick 3)")
    parser.add_argument("--side", type=int, default=128, help="source image side in pixels")
    parser.add_argument("--size", type=int, default=64, help="output image side (TrainConfig.image_size default)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", default="0,1,2", help="comma-separated DataLoader worker counts")
    args = parser.parse_args()
    n_images = args.images or (800 if args.quick else 3000)
    repeats = args.repeats or (3 if args.quick else 5)
    workers_list = [int(w) for w in args.workers.split(",")]
    torch.set_num_threads(1)
    cv2.setNumThreads(1)

    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        root = DataRoot(tmp)
        started = time.perf_counter()
        build_release(root, "bench", make_records(n_images, args.side), ReleaseConfig(train=1.0, val=0.0, test=0.0))
        release = load_release(root, "bench")  # verified, as training reads it
        setup_s = time.perf_counter() - started
        train = release.train
        labels = sorted(set(train.column("label").to_pylist()))
        train_tf, _ = build_recipe(release.augmentation, args.size, seed=0)
        peer_tf = A.from_dict(serialize(train_tf))  # the library's own rebuild of the same transforms
        images = train.column("image").to_pylist()

        results: dict[str, list[float]] = {"plain loop": []}
        loaders = {}
        start_s: dict[str, float] = {}
        for w in workers_list:
            ds = ReleaseImageDataset(train, labels, build_recipe(release.augmentation, args.size, seed=0)[0], seed=0)
            sampler = EpochSampler(len(ds), seed=0)
            loader = make_loader(ds, args.batch_size, device=torch.device("cpu"), workers=w, sampler=sampler)
            # Warm-up pass: starts the persistent workers (spawn imports torch + albumentations in each).
            t, _ = timed(lambda loader=loader, sampler=sampler: flywheel_epoch(loader, sampler, 0))
            start_s[f"flywheel w={w}"] = t
            loaders[f"flywheel w={w}"] = (loader, sampler)
            results[f"flywheel w={w}"] = []
        plain_loop(images[: args.batch_size * 4], peer_tf, args.batch_size)  # warm the peer's caches too

        # Interleave the settings in each repeat, so drift on the shared machine hits them alike.
        for rep in range(1, repeats + 1):
            t, n = timed(lambda: plain_loop(images, peer_tf, args.batch_size))
            results["plain loop"].append(n / t)
            for name, (loader, sampler) in loaders.items():
                t, n = timed(lambda loader=loader, sampler=sampler, rep=rep: flywheel_epoch(loader, sampler, rep))
                results[name].append(n / t)
        del loaders

    med = {name: statistics.median(v) for name, v in results.items()}
    peer = med["plain loop"]
    print(f"# loader benchmark: {n_images} JPEG {args.side}px -> {args.size}px train-basic, batch {args.batch_size}")
    print(f"# {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, albumentations {A.__version__}")
    print(f"# release build + verify: {setup_s:.1f} s; repeats: {repeats}; figures: images/s (median, min-max)")
    print(f"{'setting':<16}{'images/s':>10}{'min':>9}{'max':>9}{'vs plain':>10}{'start s':>9}")
    for name, values in results.items():
        start = f"{start_s[name]:.1f}" if name in start_s else "-"
        print(f"{name:<16}{med[name]:>10.0f}{min(values):>9.0f}{max(values):>9.0f}{med[name] / peer:>10.2f}{start:>9}")
    if torch.cuda.is_available():
        print("# CUDA present: see training metrics (train_images_per_s, data_wait_fraction) for GPU-side figures")
    figures = " ".join(f"flywheel_w{w}={med[f'flywheel w={w}']:.0f}" for w in workers_list)
    base = f"flywheel w={workers_list[0]}"
    print(f"bench loader: {figures} plain_loop={peer:.0f} ratio={med[base] / peer:.3f}")


if __name__ == "__main__":
    main()

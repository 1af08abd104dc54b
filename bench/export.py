"""Export benchmark: Flywheel's webdataset export beside a plain tarfile loop writing the same members.

Both sides start from the same loaded release (its train split, encoded PNGs). Flywheel runs export_release
(fmt="webdataset": shards, every file read back and every image checked against the release, export.json);
the peer writes the same <record_id>.<ext>/.cls/.json members with tarfile into one shard per shard_bytes,
with no verification. Figures are MB/s of shard bytes written, median of the repeats; ratio = Flywheel over
tarfile (higher is better; below 1.0 is the cost of the checks). `write_tar_shards` is the function to time alone.

Run: `make bench-export` (or `QUICK=1 make bench-export`), or `.venv/bin/python bench/export.py [--quick]`.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pyarrow as pa
from PIL import Image

from corpus.exports.export import export_release
from corpus.exports.formats import webdataset_samples
from corpus.exports.rows import select_rows
from corpus.releases.build import build_release
from corpus.releases.config import ReleaseConfig
from corpus.releases.versions import load_release
from corpus.schema import conform, make_record_id
from corpus.store import DataRoot


def _records(n: int, side: int) -> pa.Table:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)).save(buf, format="PNG")
        data = buf.getvalue()
        rows.append({"record_id": make_record_id(data), "kind": "image", "image": data, "label": f"c{i % 4}"})
    return conform(pa.Table.from_pylist(rows))


def _tarfile_peer(samples: list, shard_bytes: int, out: Path) -> int:
    written, shard, size, tar = 0, 0, 0, None
    for key, members in samples:
        if tar is None or size > shard_bytes:
            if tar is not None:
                tar.close()
            tar, size, shard = tarfile.open(out / f"train-{shard:06d}.tar", "w"), 0, shard + 1  # noqa: SIM115
        for ext, data in members.items():
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            size += len(data) + 512
    tar.close()
    for p in out.iterdir():
        written += p.stat().st_size
    return written


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", default=bool(os.environ.get("QUICK")))
    args = parser.parse_args()
    n, side, repeats = (600, 96, 3) if args.quick else (3000, 192, 3)
    shard_bytes = 16 * 1024 * 1024
    with tempfile.TemporaryDirectory() as tmp:
        root = DataRoot(f"{tmp}/root")
        build_release(root, "bench", _records(n, side), ReleaseConfig(train=1.0, val=0.0, test=0.0))
        rows = select_rows(load_release(root, "bench"))
        samples = list(webdataset_samples(rows.splits["train"], rows))
        ours, peer = [], []
        for r in range(repeats):
            t0 = time.perf_counter()
            out = export_release(root, "bench", 1, "webdataset", f"{tmp}/fw{r}", shard_bytes=shard_bytes)
            mb = sum(e["bytes"] for p, e in out["files"].items() if p.endswith(".tar")) / 1e6
            ours.append(mb / (time.perf_counter() - t0))
            (Path(tmp) / f"tf{r}").mkdir()
            t0 = time.perf_counter()
            mb_peer = _tarfile_peer(samples, shard_bytes, Path(tmp) / f"tf{r}") / 1e6
            peer.append(mb_peer / (time.perf_counter() - t0))
    fw, tf = statistics.median(ours), statistics.median(peer)
    print(f"rows={n} side={side}px shards<= {shard_bytes >> 20} MiB; flywheel export (load+write+verify) vs tarfile")
    print(f"bench export: flywheel={fw:.1f} MB/s tarfile={tf:.1f} MB/s ratio={fw / tf:.2f}")


if __name__ == "__main__":
    main()

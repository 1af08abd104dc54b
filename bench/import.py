"""Import benchmark: `flywheel import` of a generated ImageFolder tree, imported and curated, beside a plain loop.

One generated tree (10 classes x 1,000 distinct 96 px JPEGs; QUICK: 10 x 100) is read by two children, each a
fresh process so that its peak RSS is its own:

- Flywheel: crawlers.importers.importer.import_to_root (walk, state, record rows, raw shards, labels as
  pre-annotations), then curate (decode, checks, exact + near-duplicate search against the dedup index) and
  scrub (EXIF strip, faces, PII) as the `import` flow runs them, without the Prefect server around them;
- the plain loop: for each file, read it, SHA-256 it and decode it with Pillow; nothing is written.

`--per-class N` sets the tree's size (e.g. 200 for 2,000 images, to compare peak memory with the 10,000 run).

Figures: images/s over the whole run and peak RSS (MB) of each child; ratio = Flywheel's images/s over the plain
loop's (higher is better; 1.0 would be an import that costs no more than decoding and hashing).
Closing line: `bench import: ... ratio=<Flywheel images/s over the plain loop>`.

Run: `make bench-import` (or `QUICK=1 make bench-import`), or `.venv/bin/python bench/import.py [--quick]`.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

CLASSES = 10


def generate_tree(base: Path, per_class: int, side: int = 96) -> int:
    """base/class-<k>/<n>.jpg: noise with a coloured block, distinct per file (no planted duplicates)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for k in range(CLASSES):
        folder = base / f"class-{k}"
        folder.mkdir(parents=True)
        for n in range(per_class):
            pixels = rng.integers(0, 255, size=(side, side, 3), dtype=np.uint8)
            x, y = (int(v) for v in rng.integers(0, side // 2, size=2))
            pixels[y : y + side // 3, x : x + side // 3] = rng.integers(0, 255, size=3, dtype=np.uint8)
            buf = io.BytesIO()
            Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
            (folder / f"{n:05d}.jpg").write_bytes(buf.getvalue())
    return CLASSES * per_class


def run_flywheel(tree: Path, data: Path) -> dict:
    from corpus.stages import run_stage_sharded
    from corpus.store import DataRoot
    from crawlers.importers.config import ImportConfig
    from crawlers.importers.importer import import_to_root
    from curation.curate import run_curate
    from curation.curate_config import CurateConfig
    from curation.scrub import SCRUB, ScrubConfig

    root = DataRoot(str(data))
    started = time.perf_counter()
    report = import_to_root(root, ImportConfig(source=str(tree), name="bench"), import_run="import-1", work_dir=data)
    imported = time.perf_counter()
    # Shards sized from the input (the flow's default), one after another in this process.
    curated = run_curate(root, CurateConfig(), [report["output"]])
    scrubbed = run_stage_sharded(root, SCRUB, ScrubConfig(), [f"{curated['output']}/kept"])
    done = time.perf_counter()
    return {
        "images": report["files"],
        "seconds": done - started,
        "import_s": imported - started,
        "curate_scrub_s": done - imported,
        "kept": scrubbed["kept"],
        "dropped": curated["dropped_by_reason"],
        "shards": curated["shards"],
    }


def run_plain(tree: Path) -> dict:
    from PIL import Image

    started, images = time.perf_counter(), 0
    for path in sorted(tree.rglob("*.jpg")):
        data = path.read_bytes()
        hashlib.sha256(data).hexdigest()
        with Image.open(io.BytesIO(data)) as image:
            image.load()
        images += 1
    return {"images": images, "seconds": time.perf_counter() - started}


def child(side: str, tree: Path, data: Path) -> None:
    result = run_flywheel(tree, data) if side == "flywheel" else run_plain(tree)
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def run_child(side: str, tree: Path, data: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, "--child", side, str(tree), str(data)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{side} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", default=os.environ.get("QUICK") not in (None, "", "0"))
    parser.add_argument("--per-class", type=int, help="images per class (default 1,000; QUICK: 100)")
    parser.add_argument("--child", nargs=3, metavar=("SIDE", "TREE", "DATA"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return
    per_class = args.per_class or (100 if args.quick else 1000)
    scratch = Path(tempfile.mkdtemp(prefix="flywheel-bench-import-"))
    try:
        started = time.perf_counter()
        n = generate_tree(scratch / "tree", per_class)
        print(f"tree: {n} JPEGs in {CLASSES} classes, {time.perf_counter() - started:.1f} s")
        plain = run_child("plain", scratch / "tree", scratch / "unused")
        fly = run_child("flywheel", scratch / "tree", scratch / "data")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if fly["images"] != plain["images"] or fly["kept"] != n:
        raise SystemExit(f"FAILED: flywheel read {fly['images']} and kept {fly['kept']} of {n} ({fly['dropped']})")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(f"{'side':<34}{'images':>8}{'seconds':>9}{'images/s':>10}{'peak MB':>9}")
    for name, r in (("plain loop (read, sha256, decode)", plain), ("flywheel import + curate + scrub", fly)):
        print(f"{name:<34}{r['images']:>8}{r['seconds']:>9.1f}{r['images'] / r['seconds']:>10.1f}{r['peak_mb']:>9.0f}")
    print(
        f"flywheel: import {fly['import_s']:.1f} s, curate + scrub {fly['curate_scrub_s']:.1f} s "
        f"({fly['shards']} shards)"
    )
    fly_rate, plain_rate = fly["images"] / fly["seconds"], plain["images"] / plain["seconds"]
    print(
        f"bench import: images={n} flywheel_images_per_s={fly_rate:.1f} plain_images_per_s={plain_rate:.1f} "
        f"import_only_images_per_s={fly['images'] / fly['import_s']:.1f} "
        f"flywheel_peak_mb={fly['peak_mb']:.0f} plain_peak_mb={plain['peak_mb']:.0f} ratio={fly_rate / plain_rate:.3f}"
    )


if __name__ == "__main__":
    main()

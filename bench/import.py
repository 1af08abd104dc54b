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

MEMORY mode (`make bench-import MEMORY=1`, or `--memory`): peak RSS of import + curate + scrub (shards sized
from the input, as the flow runs them) on generated folders of 2,000, 10,000 and 50,000 distinct 32x32 PNGs
(QUICK: 2,000, 4,000, 8,000; never below one automatic shard of 2,000 rows, whose own size sets the peak), each
size in a fresh process, beside the plain loop's peak on the same files. Scrub's OCR and face detection are off
there: they hold one image or one OCR batch at a time, whatever the input's size, and would make 50,000 images
take an hour on 2 cores. Figures: peak and end RSS (MB) per size, the growth of Flywheel's peak in MB per 1,000
rows from the smallest to the largest size, and the peak that growth gives at 10^6 rows. Closing line:
`bench import-memory: ... mb_per_1k_rows=<growth> ratio=<plain loop peak over Flywheel peak, largest size>`.
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


def generate_tiny(base: Path, images: int, side: int = 32) -> int:
    """base/class-<k>/<n>.png: `images` distinct noise PNGs of side x side in CLASSES folders (no lookalikes:
    their pHashes are random, so the duplicate search finds almost no candidate pairs and what grows is the
    pipeline's own bookkeeping, not the number of near-duplicate links)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(1)
    for k in range(CLASSES):
        (base / f"class-{k}").mkdir(parents=True)
    for n in range(images):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, size=(side, side, 3), dtype=np.uint8)).save(buf, format="PNG")
        (base / f"class-{n % CLASSES}" / f"{n:07d}.png").write_bytes(buf.getvalue())
    return images


def run_flywheel(tree: Path, data: Path, scrub_cfg=None) -> dict:
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
    scrubbed = run_stage_sharded(root, SCRUB, scrub_cfg or ScrubConfig(), [f"{curated['output']}/kept"])
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
    for path in sorted(p for p in tree.rglob("*") if p.suffix in (".jpg", ".png")):
        data = path.read_bytes()
        hashlib.sha256(data).hexdigest()
        with Image.open(io.BytesIO(data)) as image:
            image.load()
        images += 1
    return {"images": images, "seconds": time.perf_counter() - started}


def current_rss_mb() -> float:
    """This process's resident memory now (Linux /proc; the peak where it is not available)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(side: str, tree: Path, data: Path) -> None:
    if side == "flywheel-memory":
        from curation.scrub import ScrubConfig

        result = run_flywheel(tree, data, ScrubConfig(ocr_pii=False, blur_faces=False))
    else:
        result = run_flywheel(tree, data) if side == "flywheel" else run_plain(tree)
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["end_mb"] = current_rss_mb()
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
    parser.add_argument(
        "--memory", action="store_true", default=os.environ.get("MEMORY") not in (None, "", "0"),
        help="peak RSS at 2,000 / 10,000 / 50,000 tiny images instead (QUICK: 2,000 / 4,000 / 8,000)",
    )  # fmt: skip
    parser.add_argument("--child", nargs=3, metavar=("SIDE", "TREE", "DATA"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return
    if args.memory:
        measure_memory((2_000, 4_000, 8_000) if args.quick else (2_000, 10_000, 50_000))
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


def _joined(results) -> str:
    return "/".join(f"{r['peak_mb']:.0f}" for r in results)


def measure_memory(sizes: tuple[int, ...]) -> None:
    """Peak RSS of Flywheel and the plain loop at each size (fresh processes), and Flywheel's growth per row."""
    rows = []
    for n in sizes:
        scratch = Path(tempfile.mkdtemp(prefix="flywheel-bench-import-memory-"))
        try:
            generate_tiny(scratch / "tree", n)
            plain = run_child("plain", scratch / "tree", scratch / "unused")
            fly = run_child("flywheel-memory", scratch / "tree", scratch / "data")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if fly["kept"] != n:
            raise SystemExit(f"FAILED: flywheel kept {fly['kept']} of {n} ({fly['dropped']})")
        rows.append((n, fly, plain))
        print(f"{n:>8} images: flywheel peak {fly['peak_mb']:.0f} MB (end {fly['end_mb']:.0f}, {fly['shards']} shards, "
              f"{fly['seconds']:.0f} s), plain loop peak {plain['peak_mb']:.0f} MB", flush=True)  # fmt: skip
    (n0, first, _), (n1, last, plain_last) = rows[0], rows[-1]
    growth = (last["peak_mb"] - first["peak_mb"]) / ((n1 - n0) / 1000)
    million = first["peak_mb"] + growth * (1_000_000 - n0) / 1000
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(
        f"bench import-memory: sizes={'/'.join(str(n) for n, _, _ in rows)} "
        f"flywheel_peak_mb={_joined(f for _, f, _ in rows)} "
        f"plain_peak_mb={_joined(p for _, _, p in rows)} mb_per_1k_rows={growth:.2f} "
        f"peak_at_1e6_rows_mb={million:.0f} ratio={plain_last['peak_mb'] / last['peak_mb']:.3f}"
    )


if __name__ == "__main__":
    main()

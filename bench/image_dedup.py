"""Image near-dup benchmark: Flywheel's pHash + multi-index search vs imagededup's PHash, on the same JPEG files.

Run: `make bench-image-dedup` (QUICK=1 for 1,000 images). The corpus (10k JPEGs, 20% planted copies made by
resize, JPEG re-encode, small crop or brightness change) is written to one folder; each side reads the files,
hashes and searches at Hamming distance <= 10 (imagededup's PHash default max_distance_threshold) with 2
workers, in its own process. ratio = Flywheel images/s over imagededup's.

A third side, `curate`, runs Flywheel's whole curate stage (`curation.curate.curate`, one process) on the same
files as records: every image decoded to catch truncated and bomb files, size/shape/information checks, SHA-256,
pHash + layout signature, exact and near-duplicate search. Its images/s stands beside the hash-only figure
(`curate_images_per_s=`, `curate_over_hash=`), with its own precision and recall against the plant.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpora import emit, is_quick, make_image_corpus, pair_scores, peak_rss_mb, spawn_side

MAX_DISTANCE = 10
WORKERS = 2  # the machine's cores; imagededup's num_enc_workers / num_dist_workers get the same
SIDES = ("flywheel", "curate", "imagededup")


def _components(names: list[str], duplicates: dict[str, list[str]]) -> np.ndarray:
    """Cluster labels (N,) from imagededup's file -> duplicate files map (single linkage, like Flywheel's)."""
    index = {name: k for k, name in enumerate(names)}
    parent = list(range(len(names)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for name, others in duplicates.items():
        for other in others:
            a, b = find(index[name]), find(index[other])
            if a != b:
                parent[max(a, b)] = min(a, b)
    return np.array([find(k) for k in range(len(names))], dtype=np.int64)


def run_flywheel(folder: Path, names: list[str]) -> np.ndarray:
    from curation.dedup import find_near_duplicates
    from curation.images import compute_phashes

    images = [(folder / name).read_bytes() for name in names]
    hashes, _ = compute_phashes(images, workers=WORKERS)
    return find_near_duplicates(hashes, MAX_DISTANCE)


def run_curate(folder: Path, names: list[str]) -> np.ndarray:
    from datetime import UTC, datetime

    import pyarrow as pa

    from corpus.schema import RECORD_SCHEMA, conform, make_record_id
    from curation.curate import curate

    images = [(folder / name).read_bytes() for name in names]
    fetched = pa.array([datetime(2026, 1, 1, tzinfo=UTC)] * len(names), RECORD_SCHEMA.field("fetched_at").type)
    table = pa.table(
        {
            "record_id": [make_record_id(data) for data in images],
            "kind": ["image"] * len(names),
            "url": [f"http://127.0.0.1/{name}" for name in names],
            "fetched_at": fetched,
            "image": pa.array(images, pa.binary()),
        }
    )
    out = curate(conform(table, RECORD_SCHEMA))
    rows = pa.concat_tables(
        [out.kept.select(["url", "near_dup_cluster"]), out.dropped.select(["url", "near_dup_cluster"])]
    )
    cluster = dict(zip(rows.column("url").to_pylist(), rows.column("near_dup_cluster").to_pylist(), strict=True))
    ids = {c: k for k, c in enumerate(dict.fromkeys(cluster[f"http://127.0.0.1/{name}"] for name in names))}
    return np.array([ids[cluster[f"http://127.0.0.1/{name}"]] for name in names], dtype=np.int64)


def run_imagededup(folder: Path, names: list[str]) -> np.ndarray:
    from imagededup.methods import PHash

    phasher = PHash(verbose=False)
    encodings = phasher.encode_images(image_dir=str(folder), num_enc_workers=WORKERS)
    duplicates = phasher.find_duplicates(
        encoding_map=encodings, max_distance_threshold=MAX_DISTANCE, num_dist_workers=WORKERS
    )
    return _components(names, duplicates)


def run_side(side: str, work: Path) -> None:
    names = json.loads((work / "names.json").read_text())
    started = time.perf_counter()
    labels = {"flywheel": run_flywheel, "curate": run_curate, "imagededup": run_imagededup}[side](
        work / "images", names
    )
    seconds = time.perf_counter() - started
    np.save(work / f"labels-{side}.npy", labels)
    emit({"seconds": seconds, "images": len(names), "peak_mb": peak_rss_mb()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--side", choices=SIDES)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--images", type=int, default=None)
    args = parser.parse_args()
    if args.side:
        run_side(args.side, args.work)
        return
    n = args.images or (1_000 if is_quick() else 10_000)
    work = Path(tempfile.mkdtemp(prefix="bench-image-dedup-"))
    try:
        corpus = make_image_corpus(n, seed=0)
        (work / "images").mkdir()
        names = [f"{k:06d}.jpg" for k in range(n)]
        for name, data in zip(names, corpus.images, strict=True):
            (work / "images" / name).write_bytes(data)
        (work / "names.json").write_text(json.dumps(names))
        rows = {}
        for side in SIDES:
            result = spawn_side(__file__, side, work)
            if result is None:
                continue
            result.update(pair_scores(np.load(work / f"labels-{side}.npy"), corpus.truth))
            result["images_per_s"] = result["images"] / result["seconds"]
            rows[side] = result
        megabytes = sum(len(d) for d in corpus.images) / 2**20
        print(f"image near-dup: {n} JPEGs ({megabytes:.0f} MB), pHash, Hamming <= {MAX_DISTANCE}, {WORKERS} workers")
        print(f"{'side':<11}{'images/s':>10}{'seconds':>9}{'peak MB':>9}{'precision':>11}{'recall':>8}{'F1':>7}")
        for side, r in rows.items():
            print(
                f"{side:<11}{r['images_per_s']:>10.0f}{r['seconds']:>9.1f}{r['peak_mb']:>9.0f}"
                f"{r['precision']:>11.3f}{r['recall']:>8.3f}{r['f1']:>7.3f}"
            )
        fw, peer, whole = rows.get("flywheel"), rows.get("imagededup"), rows.get("curate")
        if fw is None:
            raise SystemExit("flywheel side failed")
        ratio = fw["images_per_s"] / peer["images_per_s"] if peer else float("nan")
        theirs = (
            f"imagededup_images_per_s={peer['images_per_s']:.0f} imagededup_precision={peer['precision']:.3f} "
            f"imagededup_recall={peer['recall']:.3f} "
            if peer
            else ""
        )
        curated = (
            f"curate_images_per_s={whole['images_per_s']:.0f} "
            f"curate_over_hash={whole['images_per_s'] / fw['images_per_s']:.2f} "
            f"curate_precision={whole['precision']:.3f} curate_recall={whole['recall']:.3f} "
            if whole
            else ""
        )
        print(
            f"bench image-dedup: images={n} images_per_s={fw['images_per_s']:.0f} precision={fw['precision']:.3f} "
            f"recall={fw['recall']:.3f} {theirs}{curated}ratio={ratio:.2f}"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

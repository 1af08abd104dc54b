"""Copy-detection benchmark: pHash vs curation.copies (colour candidates, ORB + RANSAC + photometric check) vs both.

Run: `make bench-semantic-dedup` (QUICK=1: one seed, no curate timing). The photo set is made in code, nothing
downloaded (bench/photo_copies.py): 163 tiles of 17 bundled photos, each with one copy by a small rotation,
letterboxing, a crop or an overlay, in turn. Two seeds draw the transforms' parameters anew (the thresholds in
curation/copies.py were set while looking at seed 0; seed 1 is the check that they carry over).

Sides, each a set of linked pairs scored against the planted (tile, copy) pairs over all pairs of the set:
- phash: Flywheel's pHash at Hamming <= 10 (imagededup's PHash parameters; the curate stage's setting), the peer;
- copies: curation.copies.find_copies with its default thresholds (nothing tuned per run);
- both: the union, which is what curate with `semantic_near_duplicates` links.
Hard negatives are reported apart: false pairs of two tiles of the same photo (neighbours, textures).
The curate cost is curate()'s wall time per image with the option on minus off, on the same table.
Closing line: precision, recall of both; ratio = both's recall over pHash's.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.photo_copies import TRANSFORMS, make_photo_set
from corpus.schema import make_record_id
from curation.copies import find_copies
from curation.curate import curate
from curation.curate_config import CurateConfig
from curation.dedup import find_pairs_within
from curation.images import compute_phashes

PHASH_MAX_DISTANCE = 10


def _score(found: set, truth: set, same_photo: set) -> dict:
    hits = len(found & truth)
    return {
        "precision": hits / len(found) if found else 1.0,
        "recall": hits / len(truth),
        "pairs": len(found),
        "hard_false": len((found - truth) & same_photo),
        "other_false": len(found - truth - same_photo),
    }


def _by_transform(found: set, pairs: list[tuple], kinds: list[str]) -> dict[str, float]:
    return {
        k: float(np.mean([p in found for p, kind in zip(pairs, kinds, strict=True) if kind == k])) for k in TRANSFORMS
    }


def run_seed(seed: int) -> dict:
    """Every side's scores and timings on the photo set of `seed`."""
    images, photo_of, truth_pairs, kinds = make_photo_set(seed)
    planted = [tuple(p) for p in truth_pairs.tolist()]
    truth = set(planted)
    n = len(images)
    same_photo = {(i, j) for i in range(n) for j in range(i + 1, n) if photo_of[i] == photo_of[j]}
    started = time.perf_counter()
    hashes, _ = compute_phashes(images)
    phash = {tuple(p) for p in find_pairs_within(hashes, PHASH_MAX_DISTANCE).tolist()}
    phash_s = time.perf_counter() - started
    started = time.perf_counter()
    copies = {tuple(p) for p in find_copies(images).tolist()}
    copies_s = time.perf_counter() - started
    sides = {"phash": phash, "copies": copies, "both": phash | copies}
    return {
        "seed": seed,
        "images": images,
        "scores": {name: _score(found, truth, same_photo) for name, found in sides.items()},
        "by_transform": {name: _by_transform(found, planted, kinds) for name, found in sides.items()},
        "ms_per_image": {"phash": 1000 * phash_s / n, "copies": 1000 * copies_s / n},
    }


def curate_cost(images: list[bytes]) -> tuple[float, float]:
    """curate()'s ms per image with semantic_near_duplicates off and on, on one table of `images`."""
    import pyarrow as pa

    from corpus.schema import RECORD_SCHEMA, conform

    table = conform(
        pa.table(
            {
                "record_id": [make_record_id(data) for data in images],
                "kind": ["image"] * len(images),
                "url": [f"http://127.0.0.1/img/{k:04d}.jpg" for k in range(len(images))],
                "image": pa.array(images, pa.binary()),
            }
        ),
        RECORD_SCHEMA,
    )
    out = []
    for enabled in (False, True):
        started = time.perf_counter()
        curate(table, CurateConfig(semantic_near_duplicates=enabled))
        out.append(1000 * (time.perf_counter() - started) / len(images))
    return out[0], out[1]


def main() -> None:
    quick = os.environ.get("QUICK") == "1"
    runs = [run_seed(seed) for seed in ((0,) if quick else (0, 1))]
    n = len(runs[0]["images"])
    print(f"copy detection: {n // 2} photo tiles + {n // 2} transformed copies, all {n * (n - 1) // 2} pairs scored")
    print(f"{'seed':<5}{'side':<8}{'precision':>10}{'recall':>8}{'pairs':>7}{'hard false':>12}{'other false':>12}")
    for run in runs:
        for side, s in run["scores"].items():
            print(
                f"{run['seed']:<5}{side:<8}{s['precision']:>10.3f}{s['recall']:>8.3f}{s['pairs']:>7}"
                f"{s['hard_false']:>12}{s['other_false']:>12}"
            )
        for side, recall in run["by_transform"].items():
            print(
                f"  seed {run['seed']} recall by transform, {side:<6}: "
                + " ".join(f"{k}={v:.2f}" for k, v in recall.items())
            )
        ms = run["ms_per_image"]
        print(f"  seed {run['seed']} ms per image: phash {ms['phash']:.1f}, copies {ms['copies']:.1f}")
    off = on = float("nan")
    if not quick:
        off, on = curate_cost(runs[0]["images"])
        print(f"curate ms per image: option off {off:.1f}, on {on:.1f} (+{on - off:.1f})")
    both = [r["scores"]["both"] for r in runs]
    phash = [r["scores"]["phash"] for r in runs]
    precision, recall = min(b["precision"] for b in both), min(b["recall"] for b in both)
    phash_recall = max(p["recall"] for p in phash)
    print(
        f"bench semantic-dedup: images={n} seeds={len(runs)} phash_precision={min(p['precision'] for p in phash):.3f} "
        f"phash_recall={phash_recall:.3f} copies_precision={min(r['scores']['copies']['precision'] for r in runs):.3f} "
        f"copies_recall={min(r['scores']['copies']['recall'] for r in runs):.3f} both_precision={precision:.3f} "
        f"both_recall={recall:.3f} curate_extra_ms_per_image={on - off:.1f} ratio={recall / phash_recall:.2f}"
    )


if __name__ == "__main__":
    main()

"""Aggregation benchmark: Dawid-Skene vs majority vote with simulated annotators of mixed quality (one adversarial).

Also measures per-annotator accuracy estimated from gold items and from Dawid-Skene against the simulated
truth, and the accuracy of labels above and below the review threshold (quality.REVIEW_CONFIDENCE).
Everything goes through labeling.quality on ANNOTATION_SCHEMA tables, as the pipeline does.
Run: `.venv/bin/python bench/aggregation.py` (QUICK=1 for a small run).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from corpus.schema import ANNOTATION_SCHEMA
from labeling.quality import (
    REVIEW_CONFIDENCE,
    aggregate_dawid_skene,
    aggregate_majority,
    compute_agreement,
    estimate_annotator_accuracy,
    score_gold,
)

CLASSES = ["dots", "stripes", "checks", "sky"]
# name -> probability of the true label; "adversary" always answers the next class (a systematic swap).
ANNOTATORS = {"expert": 0.92, "good": 0.82, "average": 0.7, "weak": 0.5, "spammer": 0.25, "adversary": 0.0}
OVERLAP = 3  # annotators per item
GOLD_FRACTION = 0.05


def simulate(n_items: int, seed: int) -> tuple[pa.Table, dict[str, str], dict[str, float]]:
    """Annotations (ANNOTATION_SCHEMA), the truth, and each annotator's realised accuracy."""
    rng = np.random.default_rng(seed)
    names = list(ANNOTATORS)
    truth = {f"item{i:05d}": CLASSES[int(rng.integers(len(CLASSES)))] for i in range(n_items)}
    now = datetime(2026, 1, 1, tzinfo=UTC)
    rows, right, seen = [], dict.fromkeys(names, 0), dict.fromkeys(names, 0)
    for i, (record_id, label) in enumerate(truth.items()):
        for who in rng.choice(len(names), OVERLAP, replace=False):
            name = names[int(who)]
            if name == "adversary":
                given = CLASSES[(CLASSES.index(label) + 1) % len(CLASSES)]
            elif name == "spammer":
                given = CLASSES[int(rng.integers(len(CLASSES)))]
            elif rng.random() < ANNOTATORS[name]:
                given = label
            else:
                given = str(rng.choice([c for c in CLASSES if c != label]))
            seen[name] += 1
            right[name] += given == label
            rows.append(
                {
                    "annotation_id": len(rows) + 1,
                    "task_id": i + 1,
                    "project_id": 1,
                    "record_id": record_id,
                    "label": given,
                    "annotator": name,
                    "created_at": now,
                    "updated_at": now,
                    "lead_time": float(rng.uniform(2, 10)),
                    "was_cancelled": False,
                    "deleted": False,
                    "pulled_at": now,
                }
            )
    realised = {n: right[n] / seen[n] for n in names if seen[n]}
    return pa.Table.from_pylist(rows, schema=ANNOTATION_SCHEMA), truth, realised


def accuracy(aggregated: pa.Table, truth: dict[str, str]) -> float:
    rows = aggregated.to_pylist()
    return sum(r["label"] == truth[r["record_id"]] for r in rows) / len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", default=os.environ.get("QUICK") == "1")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    n_items = 1000 if args.quick else 5000
    seeds = (0, 1) if args.quick else (0, 1, 2, 3, 4)
    print(f"{n_items} items x {OVERLAP} annotators each, {len(CLASSES)} classes, annotators {ANNOTATORS}")
    print("| seed | MV acc | DS acc | DS acc above review threshold | DS acc below | share below | alpha |")
    print("|---|---|---|---|---|---|---|")
    mv_accs, ds_accs, gold_err, ds_err, above_acc, below_acc = [], [], [], [], [], []
    for seed in seeds:
        annotations, truth, realised = simulate(n_items, seed)
        mv = accuracy(aggregate_majority(annotations), truth)
        ds_table = aggregate_dawid_skene(annotations)
        ds = accuracy(ds_table, truth)
        conf = np.asarray(ds_table.column("label_confidence").to_pylist())
        hit = np.asarray([r["label"] == truth[r["record_id"]] for r in ds_table.to_pylist()])
        high = conf >= REVIEW_CONFIDENCE
        above = float(hit[high].mean()) if high.any() else float("nan")
        below = float(hit[~high].mean()) if (~high).any() else float("nan")
        rng = np.random.default_rng(seed + 100)
        gold_ids = rng.choice(sorted(truth), int(GOLD_FRACTION * n_items), replace=False)
        gold = {rid: truth[rid] for rid in gold_ids}
        by_gold = {n: s["gold_accuracy"] for n, s in score_gold(annotations, gold).items()}
        by_ds = estimate_annotator_accuracy(annotations)
        gold_err.append(np.mean([abs(by_gold[n] - realised[n]) for n in realised if n in by_gold]))
        ds_err.append(np.mean([abs(by_ds[n] - realised[n]) for n in realised]))
        alpha = compute_agreement(annotations)["krippendorff_alpha"]
        mv_accs.append(mv)
        ds_accs.append(ds)
        above_acc.append(above)
        below_acc.append(below)
        print(f"| {seed} | {mv:.3f} | {ds:.3f} | {above:.3f} | {below:.3f} | {1 - high.mean():.2f} | {alpha:.3f} |")
    print(f"\nannotator accuracy (last seed): true / gold ({len(gold)} items) / Dawid-Skene")
    print("| annotator | true | gold | DS |")
    print("|---|---|---|---|")
    for name in realised:
        print(f"| {name} | {realised[name]:.3f} | {by_gold.get(name, float('nan')):.3f} | {by_ds[name]:.3f} |")
    mv_mean, ds_mean = float(np.mean(mv_accs)), float(np.mean(ds_accs))
    print(
        f"\nmean over {len(seeds)} seeds: MV {mv_mean:.3f}, DS {ds_mean:.3f}; "
        f"annotator-accuracy MAE gold {np.mean(gold_err):.3f}, DS {np.mean(ds_err):.3f}; "
        f"DS labels with posterior >= {REVIEW_CONFIDENCE}: {np.nanmean(above_acc):.3f} right, below: "
        f"{np.nanmean(below_acc):.3f}"
    )
    print(f"elapsed {time.perf_counter() - started:.0f} s")
    print(
        f"bench aggregation: mv_accuracy={mv_mean:.3f} ds_accuracy={ds_mean:.3f} "
        f"gold_mae={np.mean(gold_err):.3f} ds_mae={np.mean(ds_err):.3f} ratio={ds_mean / mv_mean:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

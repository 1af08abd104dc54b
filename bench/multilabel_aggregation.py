"""Multi-label aggregation benchmark: per-label Dawid-Skene (labeling.multilabel) vs per-label majority vote.

Simulated annotators answer label sets over 4 labels with per-label noise of mixed quality: an expert, a good
and an average one, a "blind" one who never chooses `sky` (a label they cannot see), and a spammer who ticks
each label at random. The peer is per-label majority vote (ties: absent), what a script over Label Studio's
export does; both read the same ANNOTATION_SCHEMA tables, in one run. Scores against the simulated truth:
exact-set accuracy and micro F1 of the aggregated sets.
Run: `.venv/bin/python bench/multilabel_aggregation.py` (QUICK=1 for a small run).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from corpus.schema import ANNOTATION_SCHEMA
from labeling.multilabel import aggregate_multilabel, live_label_sets
from training.multilabel_evaluation import compute_micro_f1

LABELS = ["checks", "dots", "sky", "stripes"]
PREVALENCE = 0.4  # each label's chance to be in an item's true set
# name -> per-label chance of answering that label right; "blind" never ticks sky, "spammer" ticks at random.
ANNOTATORS = {"expert": 0.97, "good": 0.9, "average": 0.8, "blind": 0.9, "spammer": 0.5}
OVERLAP = 3


def simulate(n_items: int, seed: int) -> tuple[pa.Table, dict[str, frozenset[str]]]:
    rng = np.random.default_rng(seed)
    names = list(ANNOTATORS)
    truth = {f"item{i:05d}": frozenset(n for n in LABELS if rng.random() < PREVALENCE) for i in range(n_items)}
    now = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for i, (record_id, labels) in enumerate(truth.items()):
        for who in rng.choice(len(names), OVERLAP, replace=False):
            name = names[int(who)]
            chosen = []
            for label in LABELS:
                present = label in labels
                if name == "spammer":
                    present = rng.random() < 0.5
                elif rng.random() >= ANNOTATORS[name]:
                    present = not present
                if name == "blind" and label == "sky":
                    present = False
                if present:
                    chosen.append(label)
            rows.append(
                {
                    "annotation_id": len(rows) + 1,
                    "task_id": i + 1,
                    "project_id": 1,
                    "record_id": record_id,
                    "label": chosen[0] if chosen else None,
                    "labels": chosen,
                    "annotator": name,
                    "created_at": now,
                    "updated_at": now,
                    "lead_time": 3.0,
                    "was_cancelled": False,
                    "deleted": False,
                    "pulled_at": now,
                }
            )
    return pa.Table.from_pylist(rows, schema=ANNOTATION_SCHEMA), truth


def aggregate_per_label_majority(annotations: pa.Table) -> dict[str, frozenset[str]]:
    """The peer: a label is in the set when more than half of the item's annotators ticked it."""
    out = {}
    for record_id, by in live_label_sets(annotations).items():
        votes = Counter(label for chosen in by.values() for label in chosen)
        out[record_id] = frozenset(label for label, n in votes.items() if n > len(by) / 2)
    return out


def _scores(found: dict[str, frozenset[str]], truth: dict[str, frozenset[str]]) -> tuple[float, float]:
    ids = sorted(truth)
    exact = float(np.mean([found[r] == truth[r] for r in ids]))
    pred = np.array([[n in found[r] for n in LABELS] for r in ids])
    real = np.array([[n in truth[r] for n in LABELS] for r in ids])
    return exact, float(compute_micro_f1(pred, real))


def main() -> int:
    quick = os.environ.get("QUICK") == "1"
    n_items, seeds = (300, [0, 1]) if quick else (2000, [0, 1, 2, 3, 4])
    started = time.perf_counter()
    print(f"{n_items} items x {OVERLAP} annotators, {len(LABELS)} labels (prevalence {PREVALENCE}), {ANNOTATORS}")
    print("| seed | MV exact | DS exact | MV micro F1 | DS micro F1 | DS F1 on sky | MV F1 on sky |")
    print("|---|---|---|---|---|---|---|")
    ours, peer = [], []
    for seed in seeds:
        annotations, truth = simulate(n_items, seed)
        mv = aggregate_per_label_majority(annotations)
        ds = {r["record_id"]: frozenset(r["labels"]) for r in aggregate_multilabel(annotations).to_pylist()}
        (mv_exact, mv_f1), (ds_exact, ds_f1) = _scores(mv, truth), _scores(ds, truth)
        sky = [
            compute_micro_f1(
                np.array([["sky" in found[r]] for r in sorted(truth)]),
                np.array([["sky" in truth[r]] for r in sorted(truth)]),
            )
            for found in (ds, mv)
        ]
        print(f"| {seed} | {mv_exact:.3f} | {ds_exact:.3f} | {mv_f1:.3f} | {ds_f1:.3f} | {sky[0]:.3f} | {sky[1]:.3f} |")
        ours.append(ds_exact)
        peer.append(mv_exact)
    print(f"elapsed {time.perf_counter() - started:.0f} s")
    print(
        f"bench multilabel aggregation: per-label Dawid-Skene exact-set accuracy={np.mean(ours):.3f} "
        f"per-label majority={np.mean(peer):.3f} ratio={np.mean(ours) / np.mean(peer):.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

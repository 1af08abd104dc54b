"""Label rounds as pure table logic: which pool records to send next, and labels joined back onto records."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from labeling.selection import compute_cheap_embeddings, get_uncertainty_scores, select_diverse, select_uncertain

STRATEGIES = ("auto", "diversity", "uncertainty", "random")


@dataclass
class RoundPlan:
    """The records chosen for one round, in labeling order, with each one's priority in [0, 1]."""

    record_ids: list[str]
    priorities: dict[str, float]
    strategy: str
    candidates: int


def plan_round(
    pool: pa.Table,
    already_pushed: set[str],
    budget: int,
    *,
    strategy: str = "auto",
    predictions: pa.Table | None = None,
    seed: int = 0,
) -> RoundPlan:
    """Choose up to `budget` image records of `pool` that are not in Label Studio yet.

    `predictions` (PREDICTION_SCHEMA) are the newest model's scores over the pool; with them, "auto"
    means uncertainty sampling (margin) filtered for diversity over the model's embeddings, without
    them diversity (k-center greedy) over cheap pixel embeddings: the cold start. A priority of 1
    means "label this first" (most uncertain, or picked first by k-center).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
    images = pool.filter(pc.equal(pool.column("kind"), "image"))
    ids = images.column("record_id").to_pylist()
    fresh = np.array([rid not in already_pushed for rid in ids], dtype=bool)
    candidates = images.filter(pa.array(fresh))
    candidate_ids = candidates.column("record_id").to_pylist()
    k = min(budget, len(candidate_ids))
    if strategy == "auto":
        strategy = "uncertainty" if predictions is not None and predictions.num_rows else "diversity"
    if k == 0:
        return RoundPlan([], {}, strategy, 0)

    if strategy == "random":
        order = np.random.default_rng(seed).permutation(len(candidate_ids))[:k]
        chosen = [candidate_ids[i] for i in order]
        priorities = {rid: 1.0 - i / max(k, 1) for i, rid in enumerate(chosen)}
    elif strategy == "diversity":
        embeddings = compute_cheap_embeddings(candidates.column("image").to_pylist())
        order = select_diverse(embeddings, k, seed=seed)
        chosen = [candidate_ids[i] for i in order]
        priorities = {rid: 1.0 - i / max(k, 1) for i, rid in enumerate(chosen)}
    else:
        if predictions is None or predictions.num_rows == 0:
            raise ValueError("uncertainty sampling needs model predictions over the pool")
        by_id = {rid: i for i, rid in enumerate(predictions.column("record_id").to_pylist())}
        scored = [rid for rid in candidate_ids if rid in by_id]
        if not scored:
            raise ValueError("no pool record has a prediction: score the pool with the newest model first")
        rows = [by_id[rid] for rid in scored]
        probs = np.asarray(predictions.column("probs").to_pylist(), dtype=np.float32)[rows]
        embeddings = np.asarray(predictions.column("embedding").to_pylist(), dtype=np.float32)[rows]
        k = min(k, len(scored))
        order = select_uncertain(probs, k, embeddings=embeddings)
        scores = get_uncertainty_scores(probs, method="margin")
        chosen = [scored[i] for i in order]
        priorities = {scored[i]: float(scores[i]) for i in order}
    return RoundPlan(chosen, priorities, strategy, len(candidate_ids))


def attach_labels(records: pa.Table, aggregated: pa.Table) -> pa.Table:
    """Records that have an aggregated label, with label, label_source, label_confidence, annotators set.

    `aggregated` is `quality.aggregate_majority`'s table. A label from one annotator is `human`; from
    several, `consensus`.
    """
    labels = {
        row["record_id"]: row
        for row in aggregated.select(
            ["record_id", "label", "label_confidence", "annotators", "n_annotations"]
        ).to_pylist()
    }
    keep = [rid in labels for rid in records.column("record_id").to_pylist()]
    labeled = records.filter(pa.array(keep, type=pa.bool_()))
    rows = [labels[rid] for rid in labeled.column("record_id").to_pylist()]
    columns = {
        "label": pa.array([r["label"] for r in rows], type=pa.string()),
        "label_source": pa.array(["consensus" if r["n_annotations"] > 1 else "human" for r in rows], type=pa.string()),
        "label_confidence": pa.array([r["label_confidence"] for r in rows], type=pa.float32()),
        "annotators": pa.array([r["annotators"] for r in rows], type=pa.list_(pa.string())),
    }
    for name, values in columns.items():
        labeled = labeled.set_column(labeled.schema.get_field_index(name), name, values)
    return labeled

"""What label rounds produced: annotations, labeled records, new labels, agreement and annotator scorecards."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from labeling.quality import (
    aggregate_dawid_skene,
    aggregate_majority,
    build_scorecards,
    compute_agreement,
    compute_pairwise_agreement,
)


def summarize_round(annotations: pa.Table, record_ids: Iterable[str], gold: dict[str, str]) -> dict[str, Any]:
    """The summary of one round: `annotations` (every pulled annotation, ANNOTATION_SCHEMA) restricted to
    the round's `record_ids`.

    Returns {"annotations" (rows), "labeled_records", "new_labels" (labeled records that are not gold),
    "agreement" (quality.compute_agreement), "pairwise" (per annotator pair), "scorecards" (one dict per
    annotator: gold accuracy and agreement with the round's Dawid-Skene consensus)}.
    """
    wanted = pa.array(sorted(set(record_ids)), type=pa.string())
    this_round = annotations.filter(pc.is_in(annotations.column("record_id"), wanted))
    consensus = aggregate_dawid_skene(this_round, gold=gold)
    labeled = aggregate_majority(this_round).column("record_id").to_pylist()
    return {
        "annotations": this_round.num_rows,
        "labeled_records": len(labeled),
        "new_labels": sum(1 for rid in labeled if rid not in gold),
        "agreement": compute_agreement(this_round),
        "pairwise": compute_pairwise_agreement(this_round).to_pylist(),
        "scorecards": build_scorecards(this_round, consensus, gold).to_pylist(),
    }


def summarize_annotations(annotations: pa.Table) -> dict[str, Any]:
    """Annotations, labeled records and agreement over every pulled annotation (ANNOTATION_SCHEMA)."""
    return {
        "annotations": annotations.num_rows,
        "labeled_records": aggregate_majority(annotations).num_rows,
        "agreement": compute_agreement(annotations),
    }


def summarize_label_set_round(
    annotations: pa.Table, record_ids: Iterable[str], gold: dict[str, Any], labels: Iterable[str] = ()
) -> dict[str, Any]:
    """summarize_round for a multi-label round (labeling.multilabel): the same keys, where "agreement" is
    compute_label_agreement (its krippendorff_alpha the mean per-label alpha the gate checks; "per_label" each
    label's), the scorecards' gold_accuracy is the mean set F1 on gold tasks, and "pairwise" is empty (pairs
    are compared per label in "agreement"); plus "gold_per_label" (label -> F1 of every gold answer pooled)."""
    from labeling.multilabel import (
        aggregate_multilabel,
        build_label_scorecards,
        compute_label_agreement,
        score_label_gold,
    )

    wanted = pa.array(sorted(set(record_ids)), type=pa.string())
    this_round = annotations.filter(pc.is_in(annotations.column("record_id"), wanted))
    consensus = aggregate_multilabel(this_round, labels=list(labels), gold=gold)
    labeled = consensus.column("record_id").to_pylist()
    pooled: dict[str, list[float]] = {}
    for scores in score_label_gold(this_round, gold).values():
        for name, f1 in scores["per_label"].items():
            pooled.setdefault(name, []).append(f1)
    return {
        "annotations": this_round.num_rows,
        "labeled_records": len(labeled),
        "new_labels": sum(1 for rid in labeled if rid not in gold),
        "agreement": compute_label_agreement(this_round, labels=list(labels)),
        "pairwise": [],
        "scorecards": build_label_scorecards(this_round, consensus, gold).to_pylist(),
        "gold_per_label": {name: sum(v) / len(v) for name, v in sorted(pooled.items())},
    }

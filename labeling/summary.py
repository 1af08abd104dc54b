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

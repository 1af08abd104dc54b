"""The review set: which labeled records a person should look at again, each with every reason it is there."""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from labeling.quality import REVIEW_CONFIDENCE, find_review_items

# Why a record is in the review set; a record may have several.
LOW_CONFIDENCE = "low_confidence"  # the aggregated label's posterior is below the threshold
GOLD_MISMATCH = "gold_mismatch"  # a gold record whose aggregated label is not its known answer
LIKELY_MISLABELED = "likely_mislabeled"  # the newest model's confident learning flags the label
REVIEW_REASONS = (GOLD_MISMATCH, LIKELY_MISLABELED, LOW_CONFIDENCE)

REVIEW_SET_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("label", pa.string()),
        pa.field("label_confidence", pa.float32()),
        pa.field("reasons", pa.list_(pa.string()), nullable=False),
    ]
)


def build_review_set(
    aggregated: pa.Table,
    *,
    threshold: float = REVIEW_CONFIDENCE,
    gold: dict[str, str] | None = None,
    flagged: Iterable[str] = (),
) -> pa.Table:
    """Records to review (REVIEW_SET_SCHEMA), each with all of its reasons in REVIEW_REASONS order.

    `aggregated` is an aggregate table (quality.aggregate_dawid_skene); `threshold` and `gold` are those of
    quality.find_review_items; `flagged` are record ids the newest model marks as likely mislabeled
    (training's label issues). A flagged record with no aggregated label is still listed (label null).
    Ordered least confident first (null confidence first), then by record_id, so the order is stable.
    """
    by_id: dict[str, dict] = {}
    for row in find_review_items(aggregated, threshold=threshold, gold=gold).to_pylist():
        by_id[row["record_id"]] = {**row, "reasons": {row["reason"]}}
    # find_review_items gives a gold record only its mismatch; a doubtful one is doubtful too.
    known = {row["record_id"]: row for row in aggregated.select(["record_id", "label", "label_confidence"]).to_pylist()}
    for entry in by_id.values():
        confidence = entry["label_confidence"]
        if GOLD_MISMATCH in entry["reasons"] and (confidence is None or confidence < threshold):
            entry["reasons"].add(LOW_CONFIDENCE)
    for record_id in flagged:
        entry = by_id.setdefault(
            record_id, {**known.get(record_id, {"label": None, "label_confidence": None}), "reasons": set()}
        )
        entry["record_id"] = record_id
        entry["reasons"].add(LIKELY_MISLABELED)
    rows = [
        {
            "record_id": record_id,
            "label": entry.get("label"),
            "label_confidence": entry.get("label_confidence"),
            "reasons": [r for r in REVIEW_REASONS if r in entry["reasons"]],
        }
        for record_id, entry in by_id.items()
    ]
    rows.sort(key=lambda r: (-1.0 if r["label_confidence"] is None else r["label_confidence"], r["record_id"]))
    return pa.Table.from_pylist(rows, schema=REVIEW_SET_SCHEMA)

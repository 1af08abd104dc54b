"""The review set and the round summary: planted doubtful, gold-missed and flagged records, each with its reasons."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from corpus.schema import ANNOTATION_SCHEMA
from labeling.quality import AGGREGATE_SCHEMA
from labeling.review import GOLD_MISMATCH, LIKELY_MISLABELED, LOW_CONFIDENCE, build_review_set
from labeling.summary import summarize_annotations, summarize_round

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _aggregated(rows: list[tuple[str, str, float]]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {"record_id": r, "label": lab, "label_confidence": c, "annotators": ["a"], "n_annotations": 1}
            for r, lab, c in rows
        ],
        schema=AGGREGATE_SCHEMA,
    )


def test_review_set_lists_every_reason_of_each_record() -> None:
    aggregated = _aggregated(
        [
            ("sure", "cat", 0.99),
            ("doubtful", "cat", 0.55),
            ("gold-missed", "dog", 0.95),
            ("gold-missed-doubtful", "dog", 0.5),
            ("flagged", "bird", 0.97),
            ("flagged-doubtful", "bird", 0.6),
        ]
    )
    gold = {"gold-missed": "cat", "gold-missed-doubtful": "cat", "sure": "cat"}
    review = build_review_set(
        aggregated, threshold=0.8, gold=gold, flagged=["flagged", "flagged-doubtful", "never-labeled"]
    )
    reasons = dict(zip(review.column("record_id").to_pylist(), review.column("reasons").to_pylist(), strict=True))
    assert reasons == {
        "doubtful": [LOW_CONFIDENCE],
        "gold-missed": [GOLD_MISMATCH],
        "gold-missed-doubtful": [GOLD_MISMATCH, LOW_CONFIDENCE],
        "flagged": [LIKELY_MISLABELED],
        "flagged-doubtful": [LIKELY_MISLABELED, LOW_CONFIDENCE],
        "never-labeled": [LIKELY_MISLABELED],
    }
    # least confident first; a record with no label (null confidence) comes first of all
    assert review.column("record_id").to_pylist()[:3] == ["never-labeled", "gold-missed-doubtful", "doubtful"]
    labels = dict(zip(review.column("record_id").to_pylist(), review.column("label").to_pylist(), strict=True))
    assert labels["never-labeled"] is None and labels["flagged"] == "bird"


def test_review_set_is_empty_when_everything_is_sure_and_refuses_a_bad_threshold() -> None:
    aggregated = _aggregated([("a", "cat", 0.9), ("b", "dog", 1.0)])
    assert build_review_set(aggregated, threshold=0.8).num_rows == 0
    with pytest.raises(ValueError, match="threshold"):
        build_review_set(aggregated, threshold=1.5)


def _ann(aid: int, record: str, annotator: str, label: str) -> dict:
    return {
        "annotation_id": aid,
        "task_id": 100 + aid,
        "project_id": 1,
        "record_id": record,
        "label": label,
        "annotator": annotator,
        "created_at": T0,
        "updated_at": T0,
        "lead_time": 4.0,
        "was_cancelled": False,
        "deleted": False,
        "pulled_at": T0,
    }


def test_round_summary_counts_only_the_rounds_records_and_leaves_gold_out_of_new_labels() -> None:
    rows = [
        _ann(1, "r1", "ann1", "cat"),
        _ann(2, "r1", "ann2", "cat"),
        _ann(3, "r2", "ann1", "dog"),
        _ann(4, "r2", "ann2", "cat"),
        _ann(5, "gold1", "ann1", "cat"),
        _ann(6, "gold1", "ann2", "dog"),
        _ann(7, "older", "ann1", "bird"),  # labeled in an earlier round: not this round's
    ]
    annotations = pa.Table.from_pylist(rows, schema=ANNOTATION_SCHEMA)
    summary = summarize_round(annotations, ["r1", "r2", "gold1", "unlabeled"], {"gold1": "cat"})
    assert summary["annotations"] == 6
    assert summary["labeled_records"] == 3 and summary["new_labels"] == 2
    assert summary["agreement"]["items_with_overlap"] == 3
    assert summary["agreement"]["percent_agreement"] == pytest.approx(1 / 3)
    cards = {card["annotator"]: card for card in summary["scorecards"]}
    assert cards["ann1"]["gold_accuracy"] == 1.0 and cards["ann2"]["gold_accuracy"] == 0.0
    assert [(p["annotator_a"], p["annotator_b"]) for p in summary["pairwise"]] == [("ann1", "ann2")]
    overall = summarize_annotations(annotations)
    assert overall["annotations"] == 7 and overall["labeled_records"] == 4

"""Label quality: majority vote with planted disagreement, ties, the latest-version rule, agreement."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from corpus.schema import ANNOTATION_SCHEMA
from labeling.quality import aggregate_majority, compute_agreement, latest_versions

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _ann(aid: int, record: str, annotator: str, label: str | None, minute: int = 0, **extra) -> dict:
    row = {
        "annotation_id": aid,
        "task_id": 100 + aid,
        "project_id": 1,
        "record_id": record,
        "label": label,
        "annotator": annotator,
        "created_at": T0,
        "updated_at": T0 + timedelta(minutes=minute),
        "lead_time": 3.0,
        "was_cancelled": False,
        "deleted": False,
        "pulled_at": T0 + timedelta(minutes=minute),
    }
    row.update(extra)
    return row


def _table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=ANNOTATION_SCHEMA)


def _by_record(table: pa.Table) -> dict[str, dict]:
    return {row["record_id"]: row for row in table.to_pylist()}


def test_majority_with_planted_disagreement_and_tie() -> None:
    rows = [
        _ann(1, "r1", "a", "cat"),
        _ann(2, "r1", "b", "cat"),
        _ann(3, "r1", "c", "dog"),  # planted dissent
        _ann(4, "r2", "a", "dog"),
        _ann(5, "r2", "b", "cat"),  # tie: broken by label order -> cat
        _ann(6, "r3", "a", "bird"),
    ]
    out = _by_record(aggregate_majority(_table(rows)))
    assert out["r1"]["label"] == "cat" and out["r1"]["label_confidence"] == pytest.approx(2 / 3)
    assert out["r1"]["annotators"] == ["a", "b", "c"] and out["r1"]["n_annotations"] == 3
    assert out["r2"]["label"] == "cat" and out["r2"]["label_confidence"] == pytest.approx(0.5)
    assert out["r3"] == {
        "record_id": "r3",
        "label": "bird",
        "label_confidence": 1.0,
        "annotators": ["a"],
        "n_annotations": 1,
    }
    # the tie-break does not depend on row order
    again = _by_record(aggregate_majority(_table(list(reversed(rows)))))
    assert again["r2"]["label"] == "cat"


def test_latest_version_deleted_cancelled_and_one_vote_per_annotator() -> None:
    rows = [
        _ann(1, "r1", "a", "dog", minute=0),
        _ann(1, "r1", "a", "cat", minute=5),  # annotation 1 was corrected later: cat counts, not dog
        _ann(2, "r1", "b", "dog", minute=1),
        _ann(2, "r1", "b", "dog", minute=1, deleted=True, pulled_at=T0 + timedelta(hours=1)),  # then deleted
        _ann(3, "r1", "c", None, minute=2, was_cancelled=True),  # skipped task
        _ann(4, "r2", "a", "dog", minute=0),
        _ann(5, "r2", "a", "bird", minute=9),  # same annotator twice: newest vote only
        _ann(6, "r2", "b", "dog", minute=3),
    ]
    table = _table(rows)
    latest = {r["annotation_id"]: r for r in latest_versions(table).to_pylist()}
    assert latest[1]["label"] == "cat" and latest[2]["deleted"] is True
    out = _by_record(aggregate_majority(table))
    assert out["r1"]["label"] == "cat" and out["r1"]["annotators"] == ["a"] and out["r1"]["n_annotations"] == 1
    assert out["r2"]["n_annotations"] == 2
    assert out["r2"]["label"] == "bird"  # bird (a) vs dog (b) tie -> "bird" sorts first
    assert out["r2"]["label_confidence"] == pytest.approx(0.5)


def test_agreement_counts_overlap_and_detects_disagreement() -> None:
    agree = _table([_ann(i * 2 + j, f"r{i}", annotator, "cat") for i in range(4) for j, annotator in enumerate("ab")])
    result = compute_agreement(agree)
    assert result["items_with_overlap"] == 4 and result["percent_agreement"] == 1.0
    planted = _table(
        [
            _ann(1, "r1", "a", "cat"),
            _ann(2, "r1", "b", "dog"),
            _ann(3, "r2", "a", "dog"),
            _ann(4, "r2", "b", "dog"),
            _ann(5, "r3", "a", "cat"),  # no overlap: not counted
        ]
    )
    result = compute_agreement(planted)
    assert result["items_with_overlap"] == 2
    assert result["percent_agreement"] == pytest.approx(0.5)
    assert result["cohen_kappa"] < 0.5 and result["fleiss_kappa"] < 0.5
    assert compute_agreement(_table([_ann(1, "r1", "a", "cat")]))["percent_agreement"] is None


def test_wrong_table_is_rejected() -> None:
    with pytest.raises(ValueError, match="ANNOTATION_SCHEMA"):
        aggregate_majority(pa.table({"record_id": ["r1"], "label": ["cat"]}))


def test_cohen_kappa_matches_the_textbook_value() -> None:
    # Two raters, 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> p_o 0.7, p_e 0.5, kappa 0.4.
    pairs = [("yes", "yes")] * 20 + [("yes", "no")] * 5 + [("no", "yes")] * 10 + [("no", "no")] * 15
    rows = []
    for i, (first, second) in enumerate(pairs):
        rows += [_ann(2 * i, f"r{i}", "a", first), _ann(2 * i + 1, f"r{i}", "b", second)]
    result = compute_agreement(_table(rows))
    assert result["percent_agreement"] == pytest.approx(0.7)
    assert result["cohen_kappa"] == pytest.approx(0.4)
    # with two raters, Fleiss' kappa uses pooled marginals (Scott's pi): p_e = 0.45^2 + 0.55^2
    assert result["fleiss_kappa"] == pytest.approx((0.7 - 0.505) / (1 - 0.505))

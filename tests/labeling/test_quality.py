"""Label quality: majority vote with planted disagreement, ties, the latest-version rule, agreement."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from corpus.schema import ANNOTATION_SCHEMA
from labeling.quality import (
    aggregate_dawid_skene,
    aggregate_majority,
    build_scorecards,
    compute_agreement,
    compute_krippendorff_alpha,
    compute_pairwise_agreement,
    estimate_annotator_accuracy,
    find_review_items,
    latest_versions,
    score_gold,
)

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


def _crowd(n_items: int = 300, seed: int = 0) -> tuple[pa.Table, dict[str, str]]:
    """Four annotators label every item: two careful, one sloppy, one adversarial (always the next class)."""
    rng = np.random.default_rng(seed)
    classes = ["cat", "dog", "bird"]
    truth = {f"r{i}": classes[int(rng.integers(3))] for i in range(n_items)}
    error = {"good1": 0.1, "good2": 0.15, "sloppy": 0.45}
    rows, aid = [], 0
    for record, label in truth.items():
        for annotator in ("good1", "good2", "sloppy", "adversary"):
            if annotator == "adversary":
                given = classes[(classes.index(label) + 1) % 3]  # planted: systematically wrong
            elif rng.random() < error[annotator]:
                given = rng.choice([c for c in classes if c != label])
            else:
                given = label
            aid += 1
            rows.append(_ann(aid, record, annotator, str(given), lead_time=float(rng.uniform(2, 10))))
    return _table(rows), truth


def _accuracy(aggregated: pa.Table, truth: dict[str, str]) -> float:
    rows = aggregated.to_pylist()
    return sum(r["label"] == truth[r["record_id"]] for r in rows) / len(rows)


def test_krippendorff_alpha_matches_the_textbook_values() -> None:
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": the binary two-observer example
    # (alpha = 0.095) and the nominal example with 4 observers, 12 units and missing values (alpha = 0.743).
    first = [0, 1, 0, 0, 0, 0, 0, 0, 1, 0]
    second = [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]
    assert compute_krippendorff_alpha([[str(a), str(b)] for a, b in zip(first, second, strict=True)]) == (
        pytest.approx(0.095, abs=5e-4)
    )
    n = None
    observers = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
        [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n],
    ]
    units = [[str(o[u]) for o in observers if o[u] is not None] for u in range(12)]
    assert compute_krippendorff_alpha(units) == pytest.approx(0.743, abs=5e-4)
    assert compute_krippendorff_alpha([["a", "a"], ["a", "a"]]) == 1.0
    assert compute_krippendorff_alpha([["a"]]) is None


def test_pairwise_agreement_exposes_the_adversarial_annotator() -> None:
    annotations, _ = _crowd()
    pairs = compute_pairwise_agreement(annotations).to_pylist()
    assert len(pairs) == 6
    with_adversary = [p for p in pairs if "adversary" in (p["annotator_a"], p["annotator_b"])]
    careful = next(p for p in pairs if {p["annotator_a"], p["annotator_b"]} == {"good1", "good2"})
    assert careful["cohen_kappa"] > 0.6 and careful["krippendorff_alpha"] > 0.6
    assert all(p["krippendorff_alpha"] < 0.1 for p in with_adversary)
    overall = compute_agreement(annotations)
    assert overall["krippendorff_alpha"] is not None and overall["krippendorff_alpha"] < careful["krippendorff_alpha"]


def test_dawid_skene_beats_majority_with_an_adversary_and_knows_who_it_is() -> None:
    annotations, truth = _crowd()
    majority = _accuracy(aggregate_majority(annotations), truth)
    ds = aggregate_dawid_skene(annotations)
    assert ds.schema.equals(aggregate_majority(annotations).schema)
    assert _accuracy(ds, truth) > majority + 0.05
    confidences = ds.column("label_confidence").to_pylist()
    assert all(0.0 <= c <= 1.0 for c in confidences)
    accuracy = estimate_annotator_accuracy(annotations)
    assert accuracy["adversary"] < 0.1 and accuracy["good1"] > 0.8
    assert accuracy["good1"] > accuracy["sloppy"] > accuracy["adversary"]


def test_gold_scores_annotators_and_review_queue_catches_doubt_and_gold_misses() -> None:
    annotations, truth = _crowd(120)
    gold = {rid: truth[rid] for rid in list(truth)[:30]}
    scores = score_gold(annotations, gold)
    assert scores["adversary"]["gold_accuracy"] == 0.0 and scores["adversary"]["gold_items"] == 30
    assert scores["good1"]["gold_accuracy"] > 0.7
    majority = aggregate_majority(annotations)
    review = find_review_items(majority, threshold=0.8, gold=gold)
    reasons = dict(zip(review.column("record_id").to_pylist(), review.column("reason").to_pylist(), strict=True))
    # with four voters and one always wrong, no majority reaches 0.8 share unless three agree
    doubtful = {r["record_id"] for r in majority.to_pylist() if r["label_confidence"] < 0.8}
    assert doubtful <= set(reasons)
    rows = majority.to_pylist()
    wrong_gold = {r["record_id"] for r in rows if r["record_id"] in gold and r["label"] != gold[r["record_id"]]}
    assert wrong_gold and all(reasons[r] == "gold_mismatch" for r in wrong_gold)
    confs = review.column("label_confidence").to_pylist()
    assert confs == sorted(confs)
    with pytest.raises(ValueError, match="threshold"):
        find_review_items(majority, threshold=1.5)


def test_scorecards_rank_the_adversary_last() -> None:
    annotations, truth = _crowd(150)
    gold = {rid: truth[rid] for rid in list(truth)[:20]}
    table = build_scorecards(annotations, aggregate_dawid_skene(annotations), gold)
    cards = {r["annotator"]: r for r in table.to_pylist()}
    assert set(cards) == {"good1", "good2", "sloppy", "adversary"}
    assert cards["adversary"]["gold_accuracy"] == 0.0 and cards["adversary"]["consensus_agreement"] < 0.1
    assert cards["good1"]["consensus_agreement"] > cards["sloppy"]["consensus_agreement"]
    for card in cards.values():
        assert card["annotations"] == 150 and card["gold_items"] == 20
        assert 2.0 <= card["median_lead_time_s"] <= 10.0 and 360 <= card["annotations_per_hour"] <= 1800

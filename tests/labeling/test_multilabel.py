"""Multi-label answers: label sets from results, per-label Dawid-Skene with planted noise, agreement, gold, review."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from corpus.schema import ANNOTATION_SCHEMA
from labeling.label_config import build_label_config
from labeling.multilabel import (
    aggregate_multilabel,
    apply_trusted_label_sets,
    attach_label_sets,
    build_label_scorecards,
    compute_label_agreement,
    compute_set_f1,
    live_label_sets,
    score_label_gold,
)
from labeling.multilabel_quality import (
    build_label_review_set,
    build_multilabel_prediction,
    find_label_issues_per_label,
    get_label_uncertainty_scores,
)
from labeling.sync import extract_choices

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NAMES = ["checks", "dots", "sky", "stripes"]


def _ann(aid: int, record: str, annotator: str, labels: list[str] | None, minute: int = 0, **extra) -> dict:
    row = {
        "annotation_id": aid,
        "task_id": 100 + aid,
        "project_id": 1,
        "record_id": record,
        "label": labels[0] if labels else None,
        "labels": labels,
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


def _noisy_crowd(n_items: int = 60, seed: int = 3) -> tuple[pa.Table, dict[str, frozenset[str]]]:
    """Three annotators; "c" flips `sky` half the time and is otherwise right; "a" and "b" are right."""
    rng = np.random.default_rng(seed)
    truth = {f"r{i:03d}": frozenset(n for n in NAMES if rng.random() < 0.4) for i in range(n_items)}
    rows, aid = [], 0
    for rid, labels in truth.items():
        for annotator in ("a", "b", "c"):
            answer = set(labels)
            if annotator == "c" and rng.random() < 0.5:
                answer ^= {"sky"}
            if annotator == "b" and rng.random() < 0.1:
                answer ^= {"dots"}
            aid += 1
            rows.append(_ann(aid, rid, annotator, sorted(answer)))
    return _table(rows), truth


def test_config_is_a_multiple_choice() -> None:
    config = build_label_config(NAMES, multiple=True)
    assert 'choice="multiple"' in config and 'showInLine="true"' in config
    assert 'choice="single"' in build_label_config(NAMES)


def test_extract_choices_reads_every_chosen_value_and_the_empty_answer() -> None:
    result = [{"type": "choices", "value": {"choices": ["dots", "sky"]}}]
    assert extract_choices(result) == ["dots", "sky"]
    assert extract_choices([]) == []  # none of these
    assert extract_choices([{"type": "rectanglelabels", "value": {"rectanglelabels": ["dots"]}}]) is None


def test_live_sets_keep_the_newest_answer_and_drop_cancelled() -> None:
    rows = [
        _ann(1, "r1", "a", ["dots"], minute=0),
        _ann(1, "r1", "a", ["dots", "sky"], minute=5),
        _ann(2, "r1", "b", [], minute=1),
        _ann(3, "r1", "c", None, minute=1, was_cancelled=True),
    ]
    sets = live_label_sets(_table(rows))
    assert sets == {"r1": {"a": frozenset({"dots", "sky"}), "b": frozenset()}}


def test_per_label_dawid_skene_recovers_the_truth_despite_a_noisy_label() -> None:
    annotations, truth = _noisy_crowd()
    aggregated = aggregate_multilabel(annotations, labels=NAMES)
    got = {r["record_id"]: frozenset(r["labels"]) for r in aggregated.to_pylist()}
    right = sum(got[rid] == truth[rid] for rid in truth)
    assert right >= 0.95 * len(truth)
    row = aggregated.to_pylist()[0]
    assert [p["label"] for p in row["posteriors"]] == NAMES
    assert all(0.0 <= p["posterior"] <= 1.0 for p in row["posteriors"])
    assert row["annotators"] == ["a", "b", "c"] and row["n_annotations"] == 3


def test_a_label_nobody_chose_has_posterior_zero() -> None:
    two_votes = _table([_ann(1, "r1", "a", ["dots"]), _ann(2, "r1", "b", ["dots"])])
    aggregated = aggregate_multilabel(two_votes, labels=NAMES)
    row = aggregated.to_pylist()[0]
    assert row["labels"] == ["dots"]
    assert {p["label"]: p["posterior"] for p in row["posteriors"]}["sky"] == 0.0


def test_agreement_is_low_on_the_label_one_annotator_flips() -> None:
    annotations, _ = _noisy_crowd()
    agreement = compute_label_agreement(annotations, labels=NAMES)
    per_label = agreement["per_label"]
    assert per_label["sky"] < per_label["checks"]
    assert per_label["checks"] == pytest.approx(1.0)
    assert agreement["krippendorff_alpha"] == pytest.approx(np.mean(list(per_label.values())))
    assert agreement["items_with_overlap"] == 60


def test_set_f1_and_gold_scores_per_annotator() -> None:
    assert compute_set_f1(frozenset(), frozenset()) == 1.0
    assert compute_set_f1(frozenset({"a", "b"}), frozenset({"a"})) == pytest.approx(2 / 3)
    rows = [_ann(1, "g1", "a", ["dots", "sky"]), _ann(2, "g1", "b", ["dots"]), _ann(3, "g2", "b", [])]
    scores = score_label_gold(_table(rows), {"g1": ["dots", "sky"], "g2": []})
    assert scores["a"]["gold_accuracy"] == 1.0 and scores["a"]["gold_correct"] == 1
    assert scores["b"]["gold_accuracy"] == pytest.approx((2 / 3 + 1.0) / 2)
    assert scores["b"]["per_label"] == {"dots": 1.0, "sky": 0.0}


def test_scorecards_single_out_the_noisy_annotator() -> None:
    annotations, truth = _noisy_crowd()
    gold = {rid: sorted(labels) for rid, labels in list(truth.items())[:10]}
    consensus = aggregate_multilabel(annotations, labels=NAMES, gold=gold)
    cards = {c["annotator"]: c for c in build_label_scorecards(annotations, consensus, gold).to_pylist()}
    assert cards["c"]["consensus_agreement"] < cards["a"]["consensus_agreement"]
    assert cards["a"]["gold_accuracy"] == 1.0 and cards["a"]["gold_items"] == 10
    assert cards["a"]["annotations"] == 60


def test_review_set_names_the_doubtful_label_and_the_gold_miss() -> None:
    rows = [_ann(1, "r1", "a", ["dots", "sky"]), _ann(2, "r1", "b", ["dots"]), _ann(3, "r2", "a", ["dots"])]
    rows += [_ann(4, "r2", "b", ["dots"])]
    aggregated = aggregate_multilabel(_table(rows), labels=["dots", "sky"])
    flagged = pa.table({"record_id": ["r2"], "label": ["dots"]})
    review_set = build_label_review_set(aggregated, gold={"r2": []}, flagged=flagged)
    review = {r["record_id"]: r for r in review_set.to_pylist()}
    assert "low_confidence:sky" in review["r1"]["reasons"]
    assert review["r2"]["reasons"] == ["gold_mismatch:dots", "likely_mislabeled:dots"]
    assert review["r2"]["label"] == "dots"
    # A per-label threshold: a lenient one for sky takes r1 out of review.
    lenient = build_label_review_set(aggregated, threshold={"sky": 0.0, "dots": 0.8})
    assert "r1" not in lenient.column("record_id").to_pylist()


def test_confident_learning_per_label_flags_planted_errors() -> None:
    rng = np.random.default_rng(0)
    truth = rng.random((200, 3)) < 0.5
    spread = rng.uniform(0.6, 0.95, truth.shape)
    probs = np.where(truth, spread, 1.0 - spread)
    given = truth.copy()
    given[5, 1], probs[5, 1] = False, 0.99  # a missed label the model is sure of
    given[7, 2], probs[7, 2] = True, 0.01  # an extra one
    flags = find_label_issues_per_label(given, probs, ["a", "b", "c"])
    found = {(f["row"], f["label"], f["reason"]) for f in flags}
    assert (5, "b", "missing") in found and (7, "c", "extra") in found
    assert len(found) == 2  # nothing else is flagged


def test_uncertainty_is_the_per_label_margin() -> None:
    probs = np.array([[0.5, 0.5], [0.9, 0.1], [0.5, 1.0]])
    assert get_label_uncertainty_scores(probs).tolist() == pytest.approx([1.0, 0.2, 0.5])
    assert get_label_uncertainty_scores(probs, "max").tolist() == pytest.approx([1.0, 0.2, 1.0])
    with pytest.raises(ValueError, match="unknown method"):
        get_label_uncertainty_scores(probs, "entropy")


def test_preannotation_is_one_multiple_choices_result() -> None:
    payload = build_multilabel_prediction(["dots", "sky"], 0.7, "m-1")
    assert payload["model_version"] == "m-1" and payload["score"] == 0.7
    assert payload["result"][0]["value"]["choices"] == ["dots", "sky"]


def test_an_empty_set_finishes_a_multilabel_task_but_not_a_single_choice_one() -> None:
    from labeling.round_state import measure_progress, open_round, start_labeling

    def started(task: str):
        opened = open_round(
            "d", 1, 1, pool="p", labels=NAMES, strategy="diversity", model_version=None, record_ids=["r1"],
            gold=[], params={}, now=T0, deadline_hours=72, task=task,
        )  # fmt: skip
        return start_labeling(opened, {"r1": 101}, {"r1": 1}, T0)

    empty = _table([_ann(1, "r1", "a", [], minute=1)])  # "none of these": no single label, an empty set
    assert measure_progress(started("multilabel"), empty, T0 + timedelta(minutes=2))["done"] == 1
    assert measure_progress(started("classify"), empty, T0 + timedelta(minutes=2))["done"] == 0


def test_a_trusted_origins_newest_set_replaces_the_crowds_and_the_rest_stay() -> None:
    rows = [
        _ann(1, "r1", "a", ["dots"]),
        _ann(2, "r1", "b", ["dots"]),
        _ann(3, "r1", "imported:team", ["dots", "sky"], minute=1),
        _ann(4, "r1", "imported:team", ["sky"], minute=2),  # the newest answer of the origin wins
        _ann(5, "r2", "a", ["stripes"]),
        _ann(6, "r2", "b", ["stripes"]),
        _ann(7, "r3", "imported:team", [], minute=1),  # "none of these" is an answer
        _ann(8, "r3", "a", ["checks"]),
    ]
    annotations = _table(rows)
    records = pa.table({"record_id": ["r1", "r2", "r3"]})
    labeled = attach_label_sets(records, aggregate_multilabel(annotations))
    out = {r["record_id"]: r for r in apply_trusted_label_sets(labeled, annotations, ["imported:team"]).to_pylist()}
    assert out["r1"]["labels"] == ["sky"] and out["r1"]["label"] == "sky"
    assert out["r1"]["label_source"] == "imported:team" and out["r1"]["label_confidence"] == 1.0
    assert out["r3"]["labels"] == [] and out["r3"]["label_source"] == "imported:team"
    assert out["r2"]["labels"] == ["stripes"] and out["r2"]["label_source"] == "consensus"
    assert apply_trusted_label_sets(labeled, annotations, []).equals(labeled)  # nothing trusted: unchanged

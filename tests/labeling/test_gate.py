"""The label round's quality gate: each criterion passes and fails on its own, with a reason."""

from __future__ import annotations

import pytest

from labeling.gate import QualityGate, check_quality_gate, get_gold_accuracy

GOOD_AGREEMENT = {"krippendorff_alpha": 0.72, "percent_agreement": 0.8, "items_with_overlap": 24}
GOOD_CARDS = [
    {"annotator": "1", "gold_items": 4, "gold_accuracy": 1.0},
    {"annotator": "2", "gold_items": 4, "gold_accuracy": 0.75},
    {"annotator": "3", "gold_items": 4, "gold_accuracy": 0.75},
]


def _check(agreement=GOOD_AGREEMENT, cards=GOOD_CARDS, new_labels=80, gate=None):
    return check_quality_gate(agreement=agreement, scorecards=cards, new_labels=new_labels, gate=gate or QualityGate())


def test_a_good_round_passes_with_every_value_and_threshold_reported():
    result = _check()
    assert result.passed and result.reasons == []
    by_name = {c.name: c for c in result.criteria}
    assert set(by_name) == {"krippendorff_alpha", "gold_accuracy", "new_labels"}
    assert by_name["krippendorff_alpha"].value == 0.72 and by_name["krippendorff_alpha"].threshold == 0.667
    assert by_name["gold_accuracy"].value == pytest.approx(10 / 12)
    assert by_name["new_labels"].value == 80 and by_name["new_labels"].threshold == 20
    assert all(c.ok for c in result.criteria)
    assert result.to_dict()["passed"] is True


@pytest.mark.parametrize(
    ("kwargs", "failing"),
    [
        ({"agreement": {**GOOD_AGREEMENT, "krippendorff_alpha": 0.58}}, "krippendorff_alpha"),
        ({"cards": [{"annotator": "1", "gold_items": 4, "gold_accuracy": 0.5}] * 3}, "gold_accuracy"),
        ({"new_labels": 19}, "new_labels"),
    ],
)
def test_each_criterion_fails_the_round_on_its_own_with_its_reason(kwargs, failing):
    result = _check(**kwargs)
    assert not result.passed
    assert [c.name for c in result.criteria if not c.ok] == [failing]
    (reason,) = result.reasons
    assert reason.startswith(failing) and "below" in reason


def test_a_threshold_is_inclusive():
    assert _check(agreement={"krippendorff_alpha": 0.667}, new_labels=20).passed


def test_an_unmeasured_criterion_fails_unless_switched_off():
    no_overlap = {"krippendorff_alpha": None, "items_with_overlap": 0}
    no_gold = [{"annotator": "1", "gold_items": 0, "gold_accuracy": None}]
    result = _check(agreement=no_overlap, cards=no_gold)
    assert not result.passed
    assert {c.name for c in result.criteria if not c.ok} == {"krippendorff_alpha", "gold_accuracy"}
    assert all("not measured" in reason for reason in result.reasons)
    off = QualityGate(min_krippendorff_alpha=None, min_gold_accuracy=None)
    result = _check(agreement=no_overlap, cards=no_gold, gate=off)
    assert result.passed and [c.name for c in result.criteria] == ["new_labels"]


def test_gold_accuracy_is_pooled_over_every_gold_answer():
    cards = [
        {"annotator": "1", "gold_items": 8, "gold_accuracy": 1.0},
        {"annotator": "2", "gold_items": 2, "gold_accuracy": 0.0},  # few answers weigh little
        {"annotator": "3", "gold_items": 0, "gold_accuracy": None},
    ]
    assert get_gold_accuracy(cards) == pytest.approx(0.8)
    assert get_gold_accuracy([]) is None


def test_thresholds_are_validated():
    with pytest.raises(ValueError):
        QualityGate(min_gold_accuracy=1.5)
    with pytest.raises(ValueError):
        QualityGate(min_new_labels=-1)

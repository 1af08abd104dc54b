"""Pure pieces of the labeling queue and what it shows: overlap plan, review fields, annotator names, config labels."""

from __future__ import annotations

import pyarrow as pa
import pytest

from labeling.annotators import ANNOTATOR_NAME, annotator_name, name_annotators, rename_keys
from labeling.label_config import build_instructions, build_label_config, config_labels
from labeling.queue import overlaps_to_set, plan_task_overlaps
from labeling.review import GOLD_MISMATCH, LOW_CONFIDENCE, REVIEW_SET_SCHEMA
from labeling.views import review_hidden_columns, review_task_fields, round_hidden_columns

TASKS = {f"r{i}": 100 + i for i in range(10)}


def test_gold_gets_every_annotator_and_a_fraction_of_the_rest_gets_k() -> None:
    plan = plan_task_overlaps(TASKS, k=2, fraction=0.25, gold=["r0", "r9"], annotators=3)
    assert plan[100] == plan[109] == 3
    ordinary = [plan[t] for r, t in TASKS.items() if r not in ("r0", "r9")]
    assert sorted(ordinary) == [1] * 6 + [2] * 2  # round(0.25 * 8) = 2


def test_plan_is_stable_for_a_seed_and_changes_with_it() -> None:
    one = plan_task_overlaps(TASKS, k=2, fraction=0.5, gold=[], annotators=2, seed=1)
    assert one == plan_task_overlaps(dict(reversed(TASKS.items())), k=2, fraction=0.5, gold=[], annotators=2, seed=1)
    others = [plan_task_overlaps(TASKS, k=2, fraction=0.5, gold=[], annotators=2, seed=s) for s in range(2, 6)]
    assert any(other != one for other in others)


def test_overlap_is_capped_at_the_number_of_annotators() -> None:
    plan = plan_task_overlaps(TASKS, k=5, fraction=1.0, gold=["r1"], annotators=2)
    assert set(plan.values()) == {2}


def test_k_one_or_fraction_zero_means_single_annotation() -> None:
    assert set(plan_task_overlaps(TASKS, k=1, fraction=1.0, gold=[], annotators=4).values()) == {1}
    assert set(plan_task_overlaps(TASKS, k=3, fraction=0.0, gold=[], annotators=4).values()) == {1}


@pytest.mark.parametrize("kwargs", [{"k": 0}, {"annotators": 0}, {"fraction": 1.5}])
def test_plan_refuses_impossible_settings(kwargs: dict) -> None:
    settings = {"k": 2, "fraction": 0.5, "gold": [], "annotators": 2, **kwargs}
    with pytest.raises(ValueError):
        plan_task_overlaps(TASKS, **settings)


def test_only_changed_overlaps_are_set() -> None:
    assert overlaps_to_set({1: 1, 2: 3, 3: 2}, {1: 1, 2: 1}) == {2: 3, 3: 2}


def test_review_fields_read_as_words() -> None:
    review = pa.Table.from_pylist(
        [
            {"record_id": "a", "label": "dog", "label_confidence": 0.4123, "reasons": [GOLD_MISMATCH, LOW_CONFIDENCE]},
            {"record_id": "b", "label": None, "label_confidence": None, "reasons": ["likely_mislabeled"]},
        ],
        schema=REVIEW_SET_SCHEMA,
    )
    fields = review_task_fields(review)
    assert fields["a"] == {
        "review_reasons": "gold missed, low confidence",
        "aggregated_label": "dog",
        "aggregated_confidence": 0.41,
    }
    assert fields["b"] == {"review_reasons": "likely mislabeled", "aggregated_label": "", "aggregated_confidence": ""}


def test_round_tab_hides_review_fields_and_review_tab_shows_them() -> None:
    assert "tasks:data.review_reasons" in round_hidden_columns()
    assert "tasks:data.review_reasons" not in review_hidden_columns()
    for hidden in (round_hidden_columns(), review_hidden_columns()):
        assert "tasks:data.record_id" in hidden and "tasks:data.image" not in hidden
    # The review tab also drops the completion date, so aggregated_confidence fits at 1400 px (seen in Chromium).
    assert "tasks:completed_at" in review_hidden_columns() and "tasks:completed_at" not in round_hidden_columns()


def test_annotators_are_named_by_username_or_a_readable_fallback() -> None:
    names = {2: "ann1", 3: "ann2@example.com"}
    table = pa.table({"annotator": ["2", "3", "9", None]})
    named = name_annotators(table, names)
    assert named.column(ANNOTATOR_NAME).to_pylist() == ["ann1", "ann2@example.com", "user 9", None]
    assert name_annotators(named, {2: "x"}).column(ANNOTATOR_NAME).to_pylist()[0] == "x"  # replaced, not doubled
    assert annotator_name("ann1", names) == "ann1"
    assert rename_keys({"2": {"gold_accuracy": 1.0}}, names) == {"ann1": {"gold_accuracy": 1.0}}
    with pytest.raises(ValueError):
        rename_keys({"2": 1, "ann1": 2}, names)


def test_config_labels_round_trip_and_instructions_need_definitions() -> None:
    assert config_labels(build_label_config(["cat", "a & b", 'say "hi"'])) == ["cat", "a & b", 'say "hi"']
    assert config_labels("") == []
    with pytest.raises(ValueError, match="dog"):
        build_instructions(["cat", "dog"], {"cat": "A cat."})
    html = build_instructions(["<cat>"], {"<cat>": "A cat & more."})
    assert "&lt;cat&gt;" in html and "A cat &amp; more." in html and "<img" not in html

"""Round progress: when a round counts as complete, and how someone who stopped half-way stops holding it open."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa

from corpus.schema import ANNOTATION_SCHEMA
from labeling.round_state import LabelRound, due_to_close, measure_progress, open_round, start_labeling

NOW = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)


def _round(idle_after_hours: float | None) -> LabelRound:
    # Records a, b (one annotation each) and gold g1, g2 (everyone held to gold answers both).
    params = {} if idle_after_hours is None else {"idle_after_hours": idle_after_hours}
    opened = open_round(
        "d",
        1,
        7,
        pool="p",
        labels=["x", "y"],
        strategy="diversity",
        model_version=None,
        record_ids=["a", "b", "g1", "g2"],
        gold=["g1", "g2"],
        params=params,
        now=NOW - timedelta(hours=3),
        deadline_hours=72,
    )
    return start_labeling(opened, {"a": 1, "b": 2, "g1": 3, "g2": 4}, {"a": 1, "b": 1}, NOW - timedelta(hours=3))


def _annotations(rows: list[tuple[int, str, datetime]]) -> pa.Table:
    """(task id, annotator, when) -> one live label each."""
    return pa.Table.from_pylist(
        [
            {
                "annotation_id": i + 1,
                "task_id": task,
                "project_id": 7,
                "record_id": str(task),
                "label": "x",
                "annotator": who,
                "created_at": when,
                "updated_at": when,
                "lead_time": 1.0,
                "was_cancelled": False,
                "deleted": False,
                "pulled_at": NOW,
            }
            for i, (task, who, when) in enumerate(rows)
        ],
        schema=ANNOTATION_SCHEMA,
    )


def _stopped_half_way(minutes_ago: float) -> pa.Table:
    """ann and bob did everything between them and answered both gold tasks; cy answered one task and g1,
    `minutes_ago`, and never came back."""
    recent = NOW - timedelta(minutes=5)
    then = NOW - timedelta(minutes=minutes_ago)
    done = [(1, "ann"), (2, "bob"), (3, "ann"), (4, "ann"), (3, "bob"), (4, "bob")]
    return _annotations([*((task, who, recent) for task, who in done), (3, "cy", then)])


def test_without_the_idle_rule_one_person_who_stops_holds_the_round_open() -> None:
    round_ = _round(None)
    progress = measure_progress(round_, _stopped_half_way(minutes_ago=60 * 48), NOW)
    assert not progress["complete"]
    assert (progress["done"], progress["needed"]) == (2 + 5, 2 + 6)  # cy still owes g2
    assert due_to_close(round_, progress, NOW) is None


def test_someone_silent_for_idle_after_no_longer_owes_gold() -> None:
    round_ = _round(idle_after_hours=1.0)
    progress = measure_progress(round_, _stopped_half_way(minutes_ago=90), NOW)
    assert progress["complete"] and due_to_close(round_, progress, NOW) == "complete"
    assert (progress["done"], progress["needed"]) == (2 + 4, 2 + 4)  # ann's and bob's gold answers
    cards = progress["per_annotator"]
    assert cards["cy"] == {"annotations": 1, "gold_answered": 1, "gold_total": 2, "active": False}
    assert cards["ann"]["active"] and cards["bob"]["active"]


def test_someone_who_paused_less_than_idle_after_still_owes_gold() -> None:
    progress = measure_progress(_round(idle_after_hours=1.0), _stopped_half_way(minutes_ago=30), NOW)
    assert not progress["complete"] and progress["per_annotator"]["cy"]["active"]
    assert progress["needed"] - progress["done"] == 1  # cy's g2


def test_when_everyone_went_quiet_each_gold_task_still_needs_an_answer() -> None:
    long_ago = NOW - timedelta(hours=5)
    only_g1 = _annotations([(1, "ann", long_ago), (2, "ann", long_ago), (3, "ann", long_ago)])
    progress = measure_progress(_round(idle_after_hours=1.0), only_g1, NOW)
    assert not progress["complete"] and (progress["done"], progress["needed"]) == (3, 4)
    both = _annotations([(1, "ann", long_ago), (2, "ann", long_ago), (3, "ann", long_ago), (4, "ann", long_ago)])
    assert measure_progress(_round(idle_after_hours=1.0), both, NOW)["complete"]


def test_nobody_taking_part_is_never_complete() -> None:
    progress = measure_progress(_round(idle_after_hours=1.0), _annotations([]), NOW)
    assert not progress["complete"] and progress["done"] == 0 and progress["needed"] == 4


def test_the_round_records_the_embeddings_that_chose_it_and_older_files_still_load() -> None:
    opened = _round(None)
    assert opened.embeddings is None  # _round opens without naming them
    chosen = open_round(
        "d",
        2,
        7,
        pool="p",
        labels=["x"],
        strategy="hybrid",
        model_version="m1",
        embeddings="simclr-0002",
        record_ids=["a"],
        gold=[],
        params={},
        now=NOW,
        deadline_hours=1,
    )
    assert LabelRound.from_dict(chosen.to_dict()).embeddings == "simclr-0002"
    older = {k: v for k, v in chosen.to_dict().items() if k != "embeddings"}  # a round written before the field
    assert LabelRound.from_dict(older).embeddings is None

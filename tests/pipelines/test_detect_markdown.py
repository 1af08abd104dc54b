"""A closed detect round's artifact shows its box scorecards: F1 on gold and with the consensus, flags per reason."""

from __future__ import annotations

from datetime import UTC, datetime

from labeling.round_state import finish_round, open_round, start_closing, start_labeling
from pipelines.round_markdown import verdict_markdown

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_verdict_of_a_detect_round_tabulates_box_scorecards() -> None:
    opened = open_round(
        "d", 1, 1, pool="p", labels=["cat"], strategy="diversity", model_version=None, record_ids=["a"],
        gold=[], params={}, now=NOW, deadline_hours=1, task="detect",
    )  # fmt: skip
    closing = start_closing(start_labeling(opened, {"a": 1}, {"a": 2}, NOW), "complete", NOW)
    card = {"annotator": "ann", "images": 3, "boxes": 7, "gold_f1": 0.5, "consensus_f1": 0.875}
    card |= {"missing": 2, "extra": 1, "misplaced": 0, "wrong_label": 0}
    verdict = {"passed": True, "criteria": [], "reasons": []}
    closed = finish_round(closing, verdict, {"annotations": 3, "scorecards": [card]}, NOW)
    text = verdict_markdown(closed)
    assert "| annotator | images | boxes | gold F1 | F1 with consensus | missing |" in text
    assert "| ann | 3 | 7 | 0.50 | 0.88 | 2 | 1 | 0 | 0 |" in text

"""A label round's life against real Label Studio and Prefect: people label through the queue at their own pace,
the round refuses a second push, closes when its batch is complete or at its deadline, and is judged."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from annotator_http import label_until_empty, sign_up
from labeled_pools import make_labeled_pool

from corpus.store import DataRoot
from labeling.client import LabelStudioClient
from labeling.gate import QualityGate
from labeling.round_store import RoundOpenError, load_open_round, load_round, open_round_number
from pipelines.config import LabelRoundParams
from pipelines.round_close import label_check_flow, label_close_flow
from pipelines.rounds import describe_round, label_push_flow

pytestmark = [pytest.mark.labelstudio, pytest.mark.prefect]
LABELS = ["red", "green", "blue", "gray"]
# A gate a 10-task round can meet; production's thresholds (QualityGate()) are for rounds of ~100.
SMALL_GATE = QualityGate(min_krippendorff_alpha=None, min_gold_accuracy=None, min_new_labels=4)


def _params(root: DataRoot, pool: str, dataset: str, **extra) -> LabelRoundParams:
    values = {
        "dataset": dataset,
        "pool": pool,
        "labels": LABELS,
        "budget": 10,
        "overlap_fraction": 0.5,
        "overlap_k": 2,
        "min_per_class": 0,
        "gold_per_round": 0,
        "gate": SMALL_GATE,
        "data_root": root.url,
        "annotators": 2,
        **extra,
    }
    return LabelRoundParams(**values)


def test_a_round_is_labeled_through_the_queue_and_closes_complete(studio) -> None:
    root = DataRoot(str(studio.document_root))
    pool = make_labeled_pool(root, per_class=6, annotated=False)
    client = LabelStudioClient(studio.url, studio.token)
    tokens = [sign_up(client.invite_url(), f"person{i}@example.com", "Round-pass-2024") for i in (1, 2)]
    params = _params(root, pool, "queue")

    opened = label_push_flow(params)
    assert opened["opened"] and opened["round"] == 1 and opened["tasks"] == 10
    with pytest.raises(RoundOpenError, match="has an open round"):
        label_push_flow(params)
    assert label_push_flow(params.model_copy(update={"if_open": "skip"}))["opened"] is False

    # half way: one person labels, the round is not complete and stays open
    first = label_until_empty(studio.url, tokens[0], opened["project_id"])
    assert len(first) == 10  # every task once for the first person
    (checked,) = label_check_flow(dataset="queue", data_root=root.url)
    assert checked["due"] is None and checked["done"] < checked["needed"]
    status = describe_round(root.url, "queue")
    assert status["status"] == "labeling" and "person1" in status["progress"]["per_annotator"]

    second = label_until_empty(studio.url, tokens[1], opened["project_id"])
    round_ = load_open_round(root, "queue")
    wide = [rid for rid, n in round_.overlap.items() if n == 2]
    assert len(second) == len(wide) == 5  # the second person gets exactly the overlapping tasks
    (checked,) = label_check_flow(dataset="queue", data_root=root.url)
    assert checked["due"] == "complete" and checked["done"] == checked["needed"] == 15

    closed = label_close_flow(dataset="queue", reason="complete", data_root=root.url)
    assert closed["closed"] and closed["close_reason"] == "complete"
    assert closed["summary"]["annotations"] == 15 and closed["summary"]["labeled_records"] == 10
    cards = {c["annotator"] for c in closed["summary"]["scorecards"]}
    assert cards == {"person1", "person2"}  # by name, never by numeric id
    assert open_round_number(root, "queue") is None
    assert load_round(root, "queue", 1).status == "closed"
    reopened = label_push_flow(params)  # the next round may open now
    assert reopened["opened"] and reopened["round"] == 2
    assert not set(reopened["record_ids"]) & set(opened["record_ids"])


def test_two_pushes_at_the_same_moment_open_one_round_and_no_task_twice(studio) -> None:
    root = DataRoot(str(studio.document_root))
    pool = make_labeled_pool(root, per_class=8, seed=2, annotated=False)
    params = _params(root, pool, "race", budget=20, project_title="Flywheel race")
    results: list[object] = []
    start = threading.Barrier(2)

    def push() -> None:
        start.wait()
        try:
            results.append(label_push_flow(params))
        except RoundOpenError as refused:
            results.append(refused)

    threads = [threading.Thread(target=push) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    opened = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, RoundOpenError)]
    assert len(opened) == 1 and len(refused) == 1, results
    client = LabelStudioClient(studio.url, studio.token)
    tasks = client.list_tasks(opened[0]["project_id"])
    counts = Counter(t["data"]["record_id"] for t in tasks)
    assert len(tasks) == 20 and max(counts.values()) == 1


def test_a_round_nobody_finishes_closes_at_its_deadline_with_its_reasons(studio) -> None:
    root = DataRoot(str(studio.document_root))
    pool = make_labeled_pool(root, per_class=6, seed=4, annotated=False)
    params = _params(root, pool, "late", deadline_hours=1e-4, project_title="Flywheel late", min_share_done=0.8)
    opened = label_push_flow(params)
    client = LabelStudioClient(studio.url, studio.token)
    token = sign_up(client.invite_url(), "slowpoke@example.com", "Round-pass-2024")
    label_until_empty(studio.url, token, opened["project_id"], limit=3, stop_early=True)
    (checked,) = label_check_flow(dataset="late", data_root=root.url)
    assert checked["due"] == "deadline"
    closed = label_close_flow(dataset="late", reason="deadline", data_root=root.url)
    assert closed["close_reason"] == "deadline" and not closed["passed"]
    share = next(c for c in closed["verdict"]["criteria"] if c["name"] == "share_done")
    assert share["value"] < 0.8 and not share["ok"]
    assert any("of the planned annotations done" in reason for reason in closed["reasons"])

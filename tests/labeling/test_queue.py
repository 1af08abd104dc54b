"""The labeling queue with real annotators: two people who signed up by invite link, each labeling only through
Label Studio's next-task API with their own token, against a real server."""

from __future__ import annotations

from collections import Counter

import httpx
from annotator_http import RESULT, label_until_empty, sign_up

from labeling.client import LabelStudioClient
from labeling.label_config import build_label_config
from labeling.queue import overlaps_to_set, plan_task_overlaps

LABELS = ["cat", "dog"]


def make_task(record_id: str, **extra: object) -> dict:
    return {"data": {"image": f"{record_id}.png", "record_id": record_id, "caption": ""}, **extra}


def test_queue_serves_each_task_its_planned_overlap_and_gold_to_everyone(own_label_studio) -> None:
    ls = own_label_studio
    client = LabelStudioClient(ls.url, ls.token)
    invite = client.invite_url()
    tokens = [sign_up(invite, f"ann{i}@example.com", "Queue-pass-2024") for i in (1, 2)]

    project_id = client.ensure_project("queue overlap", build_label_config(LABELS))
    client.configure_queue(project_id)
    records = [f"rec{i:02d}" for i in range(10)]
    # The `overlap` key is what a per-task import would look like; Label Studio ignores it (asserted below).
    ids = client.import_tasks(project_id, [make_task(r, overlap=2) for r in records])
    task_ids = dict(zip(records, ids, strict=True))
    assert set(client.task_overlaps(project_id).values()) == {1}, "import honoured a per-task overlap"

    gold = ["rec03", "rec08"]
    plan = plan_task_overlaps(task_ids, k=2, fraction=0.5, gold=gold, annotators=2, seed=7)
    ordinary_wide = [t for r, t in task_ids.items() if r not in gold and plan[t] == 2]
    assert len(ordinary_wide) == 4 and sorted(Counter(plan.values()).items()) == [(1, 4), (2, 6)]
    changed = overlaps_to_set(plan, client.task_overlaps(project_id))
    assert client.set_task_overlaps(changed) == 6
    assert client.task_overlaps(project_id) == plan

    served = [label_until_empty(ls.url, token, project_id) for token in tokens]

    names = client.user_names()
    annotators = {t["id"]: [names[a["completed_by"]] for a in t["annotations"]] for t in client.list_tasks(project_id)}
    for record_id, task_id in task_ids.items():
        assert len(annotators[task_id]) == plan[task_id], (record_id, annotators[task_id])
        assert len(set(annotators[task_id])) == len(annotators[task_id]), f"{record_id} annotated twice by one user"
    for record_id in gold:
        assert sorted(annotators[task_ids[record_id]]) == ["ann1", "ann2"]
    for by_one in served:
        assert len(by_one) == len(set(by_one)), "the queue served a task twice to the same user"
    # show_overlap_first: the first annotator is served every task that needs more than one person first.
    wide = {t for t, n in plan.items() if n > 1}
    assert set(served[0][: len(wide)]) == wide
    # The second annotator gets exactly the tasks still short of their overlap, none of the single ones.
    assert set(served[1]) == wide


def test_annotation_api_accepts_more_than_overlap(label_studio) -> None:
    """The overlap is enforced only by the queue: the annotation API itself takes a second annotation by the
    same person on a finished task (so Flywheel's pull must still count distinct annotators)."""
    ls = label_studio
    client = LabelStudioClient(ls.url, ls.token)
    token = sign_up(client.invite_url(), "solo@example.com", "Queue-pass-2024")
    project_id = client.ensure_project("queue limits", build_label_config(LABELS))
    client.configure_queue(project_id)
    (task_id,) = client.import_tasks(project_id, [make_task("a")])
    assert label_until_empty(ls.url, token, project_id) == [task_id]
    with httpx.Client(base_url=ls.url, headers={"Authorization": f"Token {token}"}, timeout=60) as me:
        again = me.post(f"/api/tasks/{task_id}/annotations/", json={"result": RESULT})
    assert again.status_code == 201
    (task,) = client.list_tasks(project_id)
    assert len(task["annotations"]) == 2


def test_plan_caps_overlap_at_the_number_of_annotators_so_the_queue_empties(label_studio) -> None:
    """With k above the number of people, an uncapped overlap would keep tasks in the queue forever."""
    ls = label_studio
    client = LabelStudioClient(ls.url, ls.token)
    token = sign_up(client.invite_url(), "only@example.com", "Queue-pass-2024")
    project_id = client.ensure_project("queue cap", build_label_config(LABELS))
    client.configure_queue(project_id)
    ids = client.import_tasks(project_id, [make_task(str(i)) for i in range(3)])
    plan = plan_task_overlaps(dict(zip(["0", "1", "2"], ids, strict=True)), k=3, fraction=1.0, gold=["2"], annotators=1)
    client.set_task_overlaps(overlaps_to_set(plan, client.task_overlaps(project_id)))
    assert sorted(label_until_empty(ls.url, token, project_id)) == sorted(ids)

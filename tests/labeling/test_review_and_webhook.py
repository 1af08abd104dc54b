"""Against the real server: overlap settings, the review queue as a Data Manager tab, webhook-triggered pulls."""

from __future__ import annotations

import threading

import httpx
import pytest

from corpus.store import DataRoot
from labeling.client import LabelStudioClient
from labeling.label_config import build_label_config
from labeling.quality import aggregate_dawid_skene, find_review_items
from labeling.sync import pull_annotations, push_tasks, read_annotations
from labeling.webhook import SECRET_HEADER, WebhookReceiver, run_pull_loop, wants_pull

LABELS = ["cat", "dog", "bird"]


def _choice(label: str) -> list[dict]:
    return [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]


def _tasks(prefix: str, n: int) -> list[dict]:
    data = [{"image": f"media/{prefix}{i}.png", "record_id": f"{prefix}-{i}", "caption": ""} for i in range(n)]
    return [{"data": d} for d in data]


@pytest.fixture(scope="module")
def client(label_studio) -> LabelStudioClient:
    return LabelStudioClient(label_studio.url, label_studio.token)


@pytest.mark.labelstudio
def test_overlap_and_review_queue_view(client: LabelStudioClient, tmp_path) -> None:
    root = DataRoot(str(tmp_path))
    project_id = client.ensure_project("review queue project", build_label_config(LABELS))
    client.configure_queue(project_id)  # per-task overlaps decide; the project-wide settings must not redraw them
    project = client.get_project(project_id)
    assert project["maximum_annotations"] == 1 and project["overlap_cohort_percentage"] == 100
    ids = push_tasks(client, root, project_id, _tasks("rq", 6))["task_ids"]
    users = [client.ensure_user(f"rev{i}", f"rev{i}@annotators.flywheel.local") for i in range(3)]
    # rq-0..3: unanimous; rq-4: split three ways (planted doubt); rq-5: unlabeled
    for i in range(4):
        for user in users:
            client.create_annotation(ids[f"rq-{i}"], user, _choice("cat"), 3.0)
    for user, label in zip(users, LABELS, strict=True):
        client.create_annotation(ids["rq-4"], user, _choice(label), 3.0)
    pull_annotations(client, root, project_id)
    review = find_review_items(aggregate_dawid_skene(read_annotations(root)))
    assert review.column("record_id").to_pylist() == ["rq-4"]
    view = client.ensure_view(project_id, "Flywheel review", [ids[r] for r in review.column("record_id").to_pylist()])
    assert client.view_task_ids(project_id, view) == [ids["rq-4"]]
    # the queue is replaced, not duplicated, on the next round
    again = client.ensure_view(project_id, "Flywheel review", [ids["rq-1"], ids["rq-2"]])
    assert again == view and sorted(client.view_task_ids(project_id, view)) == sorted([ids["rq-1"], ids["rq-2"]])
    assert client.view_task_ids(project_id, client.ensure_view(project_id, "Flywheel review", [])) == []


@pytest.mark.labelstudio
def test_webhook_triggers_a_pull_and_rejects_strangers(client: LabelStudioClient, tmp_path) -> None:
    root = DataRoot(str(tmp_path))
    project_id = client.ensure_project("webhook project", build_label_config(LABELS))
    ids = push_tasks(client, root, project_id, _tasks("wh", 3))["task_ids"]
    user = client.ensure_user("hooked", "hooked@annotators.flywheel.local")
    pulled: list[dict] = []
    done = threading.Event()
    stop = threading.Event()
    with WebhookReceiver(secret="s3cret-hook") as receiver:
        hook = client.ensure_webhook(project_id, receiver.url, headers={SECRET_HEADER: "s3cret-hook"})
        assert client.ensure_webhook(project_id, receiver.url) == hook

        def record(result: dict) -> None:
            pulled.append(result)
            if result["total"] >= 2:
                done.set()

        loop = threading.Thread(
            target=run_pull_loop,
            args=(receiver, lambda: pull_annotations(client, root, project_id), stop),
            kwargs={"project_id": project_id, "poll_interval_s": 3600, "on_pull": record},
            daemon=True,
        )
        loop.start()
        client.create_annotation(ids["wh-0"], user, _choice("dog"), 2.0)
        client.create_annotation(ids["wh-1"], user, _choice("cat"), 2.0)
        assert done.wait(timeout=60), f"no pull after the webhook events; pulls: {pulled}"
        stop.set()
        receiver.events.put({"action": "NOOP"})  # wake the loop so it sees stop
        loop.join(timeout=30)
        # a caller without the secret is turned away and queues nothing
        assert httpx.post(receiver.url, json={"action": "ANNOTATION_CREATED"}).status_code == 403
        assert receiver.events.empty() or receiver.events.get_nowait()["action"] != "ANNOTATION_CREATED"
    pulled_rows = read_annotations(root).to_pylist()
    assert {r["record_id"]: r["label"] for r in pulled_rows} == {"wh-0": "dog", "wh-1": "cat"}
    assert not wants_pull({"action": "PROJECT_UPDATED"})
    assert not wants_pull({"action": "ANNOTATION_CREATED", "project": {"id": project_id + 1}}, project_id)

"""What annotators and reviewers see, read back from a real Label Studio: tabs, columns, instructions, labels."""

from __future__ import annotations

import httpx
import pytest

from labeling.client import LabelStudioClient, ProjectLabelsMismatch
from labeling.label_config import build_instructions, build_label_config
from labeling.views import (
    REVIEW_DATA_FIELDS,
    REVIEW_VIEW,
    review_hidden_columns,
    round_hidden_columns,
    round_view_title,
)

LABELS = ["cat", "dog", "bird"]


def _client(label_studio) -> LabelStudioClient:
    return LabelStudioClient(label_studio.url, label_studio.token)


def test_ensure_project_refuses_another_label_set(label_studio) -> None:
    client = _client(label_studio)
    project_id = client.ensure_project("ui labels", build_label_config(LABELS))
    assert client.ensure_project("ui labels", build_label_config(list(reversed(LABELS)))) == project_id
    with pytest.raises(ProjectLabelsMismatch) as caught:
        client.ensure_project("ui labels", build_label_config(["cat", "dog", "fish"]))
    message = str(caught.value)
    assert "'ui labels'" in message and "'bird'" in message and "'fish'" in message and "\n" not in message
    assert client.find_project("ui labels") == project_id  # nothing was created on the side


def test_instructions_and_image_size_are_set_on_the_project(label_studio) -> None:
    client = _client(label_studio)
    project_id = client.ensure_project("ui instructions", build_label_config(LABELS))
    definitions = {"cat": "A domestic cat, any breed.", "dog": "A dog, any breed.", "bird": "Any bird, flying or not."}
    html = build_instructions(LABELS, definitions, {"cat": ["https://example.com/cat-1.jpg"]})
    client.set_instructions(project_id, html)
    project = client.get_project(project_id)
    assert project["show_instruction"] is True
    for label, definition in definitions.items():
        assert f"<b>{label}</b>" in project["expert_instruction"] and definition in project["expert_instruction"]
    assert 'src="https://example.com/cat-1.jpg"' in project["expert_instruction"]
    assert 'maxHeight="55vh"' in project["label_config"]


def test_round_tab_opens_first_and_review_tab_shows_reasons(label_studio) -> None:
    client = _client(label_studio)
    project_id = client.ensure_project("ui tabs", build_label_config(LABELS))
    ids = client.import_tasks(
        project_id,
        [
            {"data": {"image": f"{i}.png", "record_id": f"r{i}", "caption": "", "page_url": "", "priority": i / 10}}
            for i in range(5)
        ],
    )
    review_id = client.ensure_view(project_id, REVIEW_VIEW, ids[3:], hidden_columns=review_hidden_columns())
    round_id = client.ensure_view(
        project_id, round_view_title(2), ids[:3], hidden_columns=round_hidden_columns(), first=True
    )

    views = client.views(project_id)
    assert [v["id"] for v in views][:2] == [round_id, review_id]
    by_id = {v["id"]: v for v in views}
    assert by_id[round_id]["title"] == "Round 2"
    assert by_id[round_id]["data"]["hiddenColumns"]["explore"] == round_hidden_columns()
    assert by_id[round_id]["data"]["hiddenColumns"]["labeling"] == round_hidden_columns()
    review_hidden = by_id[review_id]["data"]["hiddenColumns"]["explore"]
    assert "tasks:data.record_id" in review_hidden
    assert not any(f"tasks:data.{f}" in review_hidden for f in REVIEW_DATA_FIELDS)
    assert client.view_task_ids(project_id, round_id) == ids[2::-1]  # highest priority first
    assert client.project_url(project_id, round_id).endswith(f"/projects/{project_id}/data?tab={round_id}")

    # Every hidden id is a column this server knows (a wrong id would hide nothing and the test would not notice).
    with httpx.Client(base_url=label_studio.url, headers={"Authorization": f"Token {label_studio.token}"}) as http:
        columns = http.get("/api/dm/columns", params={"project": project_id}).json()["columns"]
    known = {f"{c['target']}:{c['id']}" for c in columns} | {
        f"{c['target']}:{c['parent']}.{c['id']}" for c in columns if c.get("parent")
    }
    client.update_task_data(
        ids[3],
        {"review_reasons": "gold missed, low confidence", "aggregated_label": "dog", "aggregated_confidence": 0.41},
    )
    with httpx.Client(base_url=label_studio.url, headers={"Authorization": f"Token {label_studio.token}"}) as http:
        columns = http.get("/api/dm/columns", params={"project": project_id}).json()["columns"]
    known |= {f"{c['target']}:{c['parent']}.{c['id']}" for c in columns if c.get("parent")}
    unknown = [c for c in round_hidden_columns() if c not in known]
    assert not unknown, unknown

    (task,) = [t for t in client.list_tasks(project_id) if t["id"] == ids[3]]
    assert task["data"]["aggregated_label"] == "dog" and task["data"]["aggregated_confidence"] == 0.41
    assert task["data"]["record_id"] == "r3" and task["data"]["image"] == "3.png"  # the rest of the data kept

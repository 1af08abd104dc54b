"""Sync that loses nothing: a real Label Studio server is SIGKILLed mid-push and mid-pull, restarted, and checked."""

from __future__ import annotations

import threading

import httpx
import pyarrow.compute as pc
import pytest

import labeling.client_retries as client_module
import labeling.sync as sync_module
from corpus.schema import ANNOTATION_SCHEMA
from corpus.store import DataRoot
from labeling.client import LabelStudioClient
from labeling.label_config import build_label_config
from labeling.sync import ANNOTATIONS_DIR, pull_annotations, push_tasks, read_annotations
from pipelines.demo.label_studio_server import LabelStudioServer, find_free_port

LABELS = ["cat", "dog", "bird"]


def _choice(label: str) -> list[dict]:
    return [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]


def _task(i: int, *, annotated_by: int | None = None) -> dict:
    label = LABELS[i % 3]
    task = {
        "data": {"image": f"media/{i}.png", "record_id": f"rec-{i:05d}", "caption": "", "priority": i / 1e4},
        "predictions": [{"model_version": "m1", "score": 0.5, "result": _choice(label)}],
    }
    if annotated_by is not None:
        task["annotations"] = [{"result": _choice(label), "completed_by": annotated_by}]
    return task


class _Crash:
    """Kills the server from another thread when armed, then restarts it on the same data dir and port."""

    def __init__(self, server: LabelStudioServer) -> None:
        self.server = server
        self.armed = threading.Event()
        self.restarted = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.armed.wait(timeout=600)
        self.armed.wait(0.1)  # let the request in flight reach the server first
        self.server.kill()
        threading.Event().wait(1.0)
        self.server.start()
        self.restarted.set()

    def join(self) -> None:
        self.thread.join(timeout=300)
        assert self.restarted.is_set(), "the server was not restarted"


@pytest.fixture
def own_server(tmp_path, label_studio):
    """A Label Studio server on its own data dir (a copy of the session's template), not the shared one."""
    base = label_studio.server
    server = LabelStudioServer(
        tmp_path / "ls-data",
        venv=base.venv,
        port=find_free_port(),
        document_root=tmp_path / "root",
        username=base.username,
        password=base.password,
        token=base.token,
        template=base.template,
        log_path=tmp_path / "ls.log",
    )
    (tmp_path / "root").mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.labelstudio
def test_push_survives_a_killed_server_and_a_lost_response(own_server, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(client_module, "BACKOFF_S", 0.2)
    monkeypatch.setattr(sync_module, "PUSH_BACKOFF_S", 0.2)
    client = LabelStudioClient(own_server.url, own_server.token, timeout=30)
    root = DataRoot(str(tmp_path / "root"))
    project_id = client.ensure_project("resilience push", build_label_config(LABELS))
    tasks = [_task(i) for i in range(1000)]
    crash = _Crash(own_server)
    real_import = client.import_tasks
    calls = {"n": 0}

    def flaky_import(project: int, batch: list[dict], *, retry: bool = True) -> list[int]:
        calls["n"] += 1
        if calls["n"] == 2:
            # Planted: Label Studio stores the batch but the response never arrives.
            real_import(project, batch, retry=retry)
            raise client_module.LabelStudioApiError("lost response") from httpx.ReadError("connection reset")
        if calls["n"] == 4:
            crash.armed.set()  # SIGKILL while this batch is in flight
        return real_import(project, batch, retry=retry)

    monkeypatch.setattr(client, "import_tasks", flaky_import)
    result = push_tasks(client, root, project_id, tasks, batch_size=200)
    crash.join()

    assert result["pushed"] == 1000 and result["already_present"] == 0
    by_record = client.task_ids_by_record(project_id)
    assert client.task_count(project_id) == 1000  # nothing doubled...
    assert set(by_record) == {t["data"]["record_id"] for t in tasks}  # ...nothing lost
    assert result["task_ids"] == by_record
    project = client.get_project(project_id)
    assert project["total_predictions_number"] == 1000  # predictions rode with their tasks, once each
    # a rerun of the whole round pushes nothing
    again = push_tasks(client, root, project_id, [*tasks, _task(5)], batch_size=200)
    assert again["pushed"] == 0 and client.task_count(project_id) == 1000


@pytest.mark.labelstudio
def test_push_resumes_from_its_journal_after_a_crash(own_server, tmp_path, monkeypatch) -> None:
    client = LabelStudioClient(own_server.url, own_server.token, timeout=30)
    root = DataRoot(str(tmp_path / "root"))
    project_id = client.ensure_project("resilience resume", build_label_config(LABELS))
    tasks = [_task(i) for i in range(600)]
    real_import = client.import_tasks
    calls = {"n": 0}

    def dying_import(project: int, batch: list[dict], *, retry: bool = True) -> list[int]:
        calls["n"] += 1
        if calls["n"] == 3:
            real_import(project, batch, retry=retry)  # stored, then the pushing process dies
            raise KeyboardInterrupt
        return real_import(project, batch, retry=retry)

    monkeypatch.setattr(client, "import_tasks", dying_import)
    with pytest.raises(KeyboardInterrupt):
        push_tasks(client, root, project_id, tasks, batch_size=100)
    monkeypatch.setattr(client, "import_tasks", real_import)
    assert client.task_count(project_id) == 300
    resumed = push_tasks(client, root, project_id, tasks, batch_size=100)
    assert client.task_count(project_id) == 600
    assert set(client.task_ids_by_record(project_id)) == {t["data"]["record_id"] for t in tasks}
    assert resumed["pushed"] == 300


@pytest.mark.labelstudio
def test_pull_survives_a_killed_server(own_server, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(client_module, "BACKOFF_S", 0.2)
    monkeypatch.setattr(sync_module, "PUSH_BACKOFF_S", 0.2)
    client = LabelStudioClient(own_server.url, own_server.token, timeout=30)
    root = DataRoot(str(tmp_path / "root"))
    project_id = client.ensure_project("resilience pull", build_label_config(LABELS))
    user = client.ensure_user("ann_pull", "ann_pull@annotators.flywheel.local")
    tasks = [_task(i, annotated_by=user if i < 300 else None) for i in range(400)]
    push_tasks(client, root, project_id, tasks)
    first = pull_annotations(client, root, project_id)
    assert first["new"] == 300
    # 12 more annotations arrive (real API calls), then a pull is interrupted by a crash
    task_ids = client.task_ids_by_record(project_id)
    fresh = [client.create_annotation(task_ids[f"rec-{i:05d}"], user, _choice("dog"), 2.0) for i in range(300, 312)]

    crash = _Crash(own_server)
    client.page_size = 4  # several pages, so the kill lands between them
    real_iter = client._iter_tasks

    def iter_then_crash(*args, **kwargs):
        for n, task in enumerate(real_iter(*args, **kwargs)):
            if n == 4:
                crash.armed.set()
                crash.armed.wait()
                threading.Event().wait(0.5)  # the server is dying now
            yield task

    monkeypatch.setattr(client, "_iter_tasks", iter_then_crash)
    second = pull_annotations(client, root, project_id, tries=10)
    crash.join()

    assert second["new"] == len(fresh) and second["total"] == 312
    raw = root.read_table(ANNOTATIONS_DIR, schema=ANNOTATION_SCHEMA)
    ids = raw.column("annotation_id").to_pylist()
    assert len(ids) == len(set(ids)) == 312  # each annotation stored once: nothing lost, nothing doubled
    assert set(fresh) <= set(ids)
    latest = read_annotations(root)
    assert pc.sum(pc.equal(latest.column("label"), "dog")).as_py() >= len(fresh)
    monkeypatch.setattr(client, "_iter_tasks", real_iter)
    assert pull_annotations(client, root, project_id)["new"] == 0

"""The Label Studio loop against a real server: projects, tasks, media, predictions, annotators, sync."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import httpx
import pyarrow as pa
import pytest
from PIL import Image

import labeling.client_retries as client_module
from corpus.schema import ANNOTATION_SCHEMA, PREDICTION_SCHEMA, conform, make_record_id
from corpus.store import DataRoot
from labeling.client import LabelStudioApiError, LabelStudioClient
from labeling.label_config import build_label_config
from labeling.quality import aggregate_majority, compute_agreement
from labeling.studio_tasks import build_predictions, build_tasks, export_media
from labeling.sync import pull_annotations, read_annotations
from pipelines.demo.annotators import SimulatedAnnotator, simulate_labeling
from pipelines.demo.label_studio_server import LabelStudioError, LabelStudioServer, stop_pid_file

LABELS = ["cat", "dog", "bird"]
COLORS = {"cat": (220, 40, 40), "dog": (40, 220, 40), "bird": (40, 40, 220)}


def _records(n: int, salt: str) -> tuple[pa.Table, dict[str, str]]:
    """n small PNGs with a planted true class each (kept apart from the table, as the pipeline would)."""
    ids, images, truth = [], [], {}
    for i in range(n):
        label = LABELS[i % len(LABELS)]
        buf = io.BytesIO()
        Image.new("RGB", (24, 24), COLORS[label]).save(buf, format="PNG", pnginfo=_info(f"{salt}-{i}"))
        data = buf.getvalue()
        record_id = make_record_id(data)
        ids.append(record_id)
        images.append(data)
        truth[record_id] = label
    table = conform(
        pa.table(
            {
                "record_id": ids,
                "kind": ["image"] * n,
                "image": images,
                "mime": ["image/png"] * n,
                "caption": [f"picture {i}" for i in range(n)],
            }
        )
    )
    return table, truth


def _info(text: str):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("salt", text)  # makes each file's bytes (and so its record_id) unique
    return info


def _push(client: LabelStudioClient, root: DataRoot, title: str, table: pa.Table) -> tuple[int, list[int]]:
    project_id = client.ensure_project(title, build_label_config(LABELS))
    paths = export_media(root, table)
    client.ensure_local_storage(project_id, root.local_path("media"))
    existing = client.task_ids_by_record(project_id)
    fresh = table.filter(pa.array([rid not in existing for rid in table.column("record_id").to_pylist()]))
    return project_id, client.import_tasks(project_id, build_tasks(fresh, paths))


@pytest.fixture(scope="module")
def client(label_studio) -> LabelStudioClient:
    return LabelStudioClient(label_studio.url, label_studio.token)


@pytest.fixture(scope="module")
def root(label_studio) -> DataRoot:
    return DataRoot(str(label_studio.document_root))


@pytest.mark.labelstudio
def test_project_is_created_once(client: LabelStudioClient) -> None:
    config = build_label_config(LABELS)
    first = client.ensure_project("idempotent project", config)
    assert client.ensure_project("idempotent project", config) == first
    assert client.ensure_project("another project", config) != first
    project = client.get_project(first)
    assert project["title"] == "idempotent project" and "<Choices" in project["label_config"]


@pytest.mark.labelstudio
def test_tasks_pushed_once_and_images_served(client: LabelStudioClient, root: DataRoot, label_studio) -> None:
    table, _ = _records(4, "push")
    project_id, ids = _push(client, root, "push project", table)
    assert len(ids) == 4
    by_record = client.task_ids_by_record(project_id)
    assert set(by_record) == set(table.column("record_id").to_pylist())
    _, again = _push(client, root, "push project", table)
    assert again == [] and client.task_count(project_id) == 4
    storage = client.ensure_local_storage(project_id, root.local_path("media"))
    assert client.ensure_local_storage(project_id, root.local_path("media")) == storage

    task = client.list_tasks(project_id)[0]
    url = label_studio.url + task["data"]["image"]
    served = httpx.get(url, headers={"Authorization": f"Token {label_studio.token}"})
    assert served.status_code == 200
    assert served.content == root.read_bytes(task["data"]["image"].split("?d=", 1)[1])
    assert httpx.get(url).status_code in (401, 403)


@pytest.mark.labelstudio
def test_predictions_visible_with_model_version(client: LabelStudioClient, root: DataRoot) -> None:
    table, truth = _records(3, "pred")
    project_id, _ = _push(client, root, "prediction project", table)
    rids = table.column("record_id").to_pylist()
    preds = pa.Table.from_pylist(
        [{"record_id": r, "predicted_label": truth[r], "confidence": 0.5 + 0.1 * i} for i, r in enumerate(rids)],
        schema=PREDICTION_SCHEMA,
    )
    payload = build_predictions(client.task_ids_by_record(project_id), preds, LABELS, "toy-v1")
    assert client.import_predictions(project_id, payload) == 3
    client.set_model_version(project_id, "toy-v1")
    assert client.get_project(project_id)["model_version"] == "toy-v1"
    tasks = {t["data"]["record_id"]: t for t in client.list_tasks(project_id)}
    for i, record_id in enumerate(rids):
        (prediction,) = tasks[record_id]["predictions"]
        assert prediction["model_version"] == "toy-v1"
        assert prediction["score"] == pytest.approx(0.5 + 0.1 * i, abs=1e-6)
        assert prediction["result"][0]["value"]["choices"] == [truth[record_id]]


@pytest.mark.labelstudio
def test_simulated_annotators_then_incremental_pull(client: LabelStudioClient, root: DataRoot) -> None:
    table, truth = _records(12, "sim")
    unknown = table.column("record_id")[11].as_py()
    truth[unknown] = None  # a task nobody can label: it must get no annotation
    project_id, _ = _push(client, root, "simulation project", table)
    tasks = client.list_tasks(project_id)
    annotators = [SimulatedAnnotator("ann_a", 0.0), SimulatedAnnotator("ann_b", 0.0), SimulatedAnnotator("ann_c", 0.0)]

    def read_truth(data: dict) -> str | None:
        return truth[data["record_id"]]

    counts = simulate_labeling(client, project_id, tasks, read_truth, LABELS, annotators, overlap_fraction=0.5)
    assert counts["tasks"] == 11 and counts["annotations"] > 11
    assert sum(counts["per_annotator"].values()) == counts["annotations"]
    annotated = client.list_annotated_tasks(project_id)
    assert client.list_annotated_tasks(project_id, since=datetime.now(UTC) + timedelta(minutes=5)) == []
    assert len(annotated) == 11 and unknown not in {t["data"]["record_id"] for t in annotated}
    users = {a["completed_by"] for t in annotated for a in t["annotations"]}
    assert len(users) >= 2
    overlapped = [t for t in annotated if len(t["annotations"]) >= 2]
    assert overlapped
    for task in overlapped:
        assert len({a["completed_by"] for a in task["annotations"]}) == len(task["annotations"])
    # a rerun annotates nothing twice
    assert (
        simulate_labeling(client, project_id, tasks, read_truth, LABELS, annotators, overlap_fraction=0.5)[
            "annotations"
        ]
        == 0
    )

    first = pull_annotations(client, root, project_id)
    n = counts["annotations"]
    assert first == {"new": n, "updated": 0, "deleted": 0, "skipped": 0, "total": n}
    parts = root.list("annotations", ".parquet")
    assert len(parts) == 1
    pulled = read_annotations(root)
    assert pulled.schema.equals(ANNOTATION_SCHEMA, check_metadata=False)
    assert set(pulled.column("annotator").to_pylist()) == {str(u) for u in users}
    majority = {r["record_id"]: r["label"] for r in aggregate_majority(pulled).to_pylist()}
    assert majority == {r: label for r, label in truth.items() if label is not None}
    assert compute_agreement(pulled)["percent_agreement"] == 1.0

    assert pull_annotations(client, root, project_id) == {**first, "new": 0}
    assert root.list("annotations", ".parquet") == parts  # nothing new, nothing written

    # an annotator changes their mind in Label Studio: the next pull brings the new version only
    target = annotated[0]["annotations"][0]
    wrong = next(label for label in LABELS if label != truth[annotated[0]["data"]["record_id"]])
    result = [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [wrong]}}]
    client.update_annotation(target["id"], result)
    second = pull_annotations(client, root, project_id)
    assert (second["new"], second["updated"], second["deleted"]) == (0, 1, 0)
    assert len(root.list("annotations", ".parquet")) == 2
    latest = {r["annotation_id"]: r for r in read_annotations(root).to_pylist()}
    assert latest[target["id"]]["label"] == wrong

    # a deleted annotation is recorded as deleted, not lost
    client.delete_annotation(target["id"])
    third = pull_annotations(client, root, project_id, full=True)
    assert third["deleted"] == 1 and third["total"] == counts["annotations"] - 1
    assert {r["annotation_id"]: r for r in read_annotations(root).to_pylist()}[target["id"]]["deleted"] is True


@pytest.mark.labelstudio
def test_client_errors_are_clear_and_never_show_the_token(client: LabelStudioClient, monkeypatch) -> None:
    with pytest.raises(LabelStudioApiError, match="status 404, try 1") as missing:
        client.get_project(987654)  # a 4xx is not retried
    assert "flywheel-demo-token" not in str(missing.value)
    with pytest.raises(ValueError, match="at least 3 characters"):
        client.ensure_project("ab", build_label_config(LABELS))
    monkeypatch.setattr(client_module, "BACKOFF_S", 0.01)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]  # bound but not listening: connections are refused
        dead = LabelStudioClient(f"http://127.0.0.1:{dead_port}", "secret-token-123", timeout=2)
        with pytest.raises(LabelStudioApiError, match=f"try {client_module.MAX_TRIES}") as refused:
            dead.task_count(1)
    assert "secret-token-123" not in str(refused.value)


@pytest.mark.labelstudio
def test_server_refuses_a_busy_port(tmp_path, label_studio) -> None:
    port = int(label_studio.url.rsplit(":", 1)[1])
    server = LabelStudioServer(
        tmp_path / "ls",
        venv=label_studio.server.venv,
        port=port,
        document_root=tmp_path,
        username="x@example.com",
        password="p",
        token="t" * 8,
    )
    with pytest.raises(LabelStudioError, match="already in use"):
        server.start()
    assert not (tmp_path / "ls").exists()


def test_stop_pid_file_stops_a_detached_process(tmp_path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    pid_file = tmp_path / "server.pid"
    pid_file.write_text(f"{proc.pid}\n")
    assert stop_pid_file(pid_file, timeout_s=5) is True
    assert proc.wait(timeout=5) is not None and not pid_file.exists()
    assert stop_pid_file(pid_file) is False


@pytest.mark.labelstudio
def test_template_is_reused_and_guards_its_credentials(tmp_path, label_studio) -> None:
    from pipelines.demo.label_studio_server import ensure_template, find_free_port

    server = label_studio.server
    template = server.template
    same = ensure_template(
        template, venv=server.venv, username=server.username, password=server.password, token=server.token
    )
    assert same == template  # already built for these credentials: no rebuild
    other = LabelStudioServer(
        tmp_path / "ls",
        venv=server.venv,
        port=find_free_port(),
        document_root=tmp_path,
        username=server.username,
        password=server.password,
        token="a-different-token",
        template=template,
    )
    with pytest.raises(LabelStudioError, match="other admin credentials"):
        other.start()
    assert not (tmp_path / "ls").exists()

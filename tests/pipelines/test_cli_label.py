"""`flywheel label push --task`: each task type opens its own kind of Label Studio project from the command line;
an unknown type is refused in one line before anything is pushed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from corpus.schema import conform, make_record_id
from corpus.store import DataRoot
from labeling.client import LabelStudioClient
from pipelines.cli import app
from tests.pipelines.labeled_pools import make_labeled_pool

TOPICS = ["sport", "science"]


def _text_pool(root: DataRoot) -> str:
    texts = [f"{topic} story {i}: {' '.join([topic] * (i + 3))} and more words" for topic in TOPICS for i in range(4)]
    rows = [
        {"record_id": make_record_id(t.encode()), "kind": "text", "url": f"http://127.0.0.1/a/{i}", "text": t}
        for i, t in enumerate(texts)
    ]
    root.write_table("curated/articles/kept/part-0000.parquet", conform(pa.Table.from_pylist(rows)))
    return "curated/articles/kept"


@pytest.mark.parametrize("task", ["boxes", "Detect", "classify,text", ""])
def test_label_push_refuses_an_unknown_task_type_in_one_line(tmp_path, monkeypatch, task) -> None:
    monkeypatch.setenv("FLYWHEEL_DATA_ROOT", str(tmp_path / "data"))
    out = CliRunner().invoke(app, ["label", "push", "--labels", "a,b", "--task", task], terminal_width=200)
    assert out.exit_code == 2
    said = " ".join(out.output.replace("│", " ").split())  # rich wraps the error in a box
    assert f"Invalid value for --task: {task!r}: expected one of classify, multilabel, detect, text" in said
    assert not (tmp_path / "data" / "rounds").exists()  # refused before a round was planned


@pytest.mark.labelstudio
@pytest.mark.prefect
@pytest.mark.parametrize(
    ("task", "tag", "pool_kind"),
    [("text", "<Text", "text"), ("detect", "<RectangleLabels", "image"), ("multilabel", 'choice="multiple"', "image")],
)
def test_label_push_opens_the_task_types_project(studio, prefect_api, task, tag, pool_kind) -> None:
    root = DataRoot(str(studio.document_root))
    if pool_kind == "text":
        pool, labels = _text_pool(root), TOPICS
    else:
        pool, labels = make_labeled_pool(root, per_class=3, annotated=False), ["red", "green", "blue", "gray"]
    dataset = f"cli-{task}"
    argv = ["label", "push", "--task", task, "--dataset", dataset, "--pool", pool, "--labels", ",".join(labels)]
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "COLUMNS": "200"}  # FLYWHEEL_* from the studio fixture
    push = [sys.executable, "-m", "pipelines.cli", *argv, "--budget", "4"]
    out = subprocess.run(push, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["opened"] and report["tasks"] == 4
    config = LabelStudioClient(studio.url, studio.token).get_project(report["project_id"])["label_config"]
    assert tag in config

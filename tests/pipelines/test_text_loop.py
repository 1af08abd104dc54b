"""`flywheel demo --task text` at a small size: text pages crawled, labeled by the crowd, released, trained on."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest

from corpus.releases.versions import load_release
from corpus.settings import get_settings
from corpus.store import DataRoot
from labeling.client import LabelStudioClient
from pipelines.demo.flow import DEMO_TASKS, DemoParams, demo_flow
from pipelines.demo.sample_site import generate_site
from pipelines.demo.sample_texts import TOPICS
from pipelines.demo.site_server import SiteServer

pytestmark = [pytest.mark.e2e, pytest.mark.labelstudio, pytest.mark.prefect]


@pytest.fixture()
def text_demo_settings(prefect_api, own_label_studio, monkeypatch):
    monkeypatch.setenv("FLYWHEEL_LABEL_STUDIO_URL", own_label_studio.url)
    monkeypatch.setenv("FLYWHEEL_LABEL_STUDIO_TOKEN", own_label_studio.token)
    monkeypatch.setenv("FLYWHEEL_DATA_ROOT", str(own_label_studio.document_root))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.mark.timeout(1800)  # two rounds, two trainings and their deployments' runs: slow on a shared 2-core box
def test_text_demo_runs_the_whole_loop(prefect_api, own_label_studio, text_demo_settings, turning_flywheel, tmp_path):
    assert "text" in DEMO_TASKS
    truth = generate_site(tmp_path / "site", seed=3, images_per_class=4, text_pages_per_topic=12)
    topic_of = {path: page["topic"] for path, page in truth["pages"].items() if page.get("topic")}
    assert len(topic_of) == 48
    root = DataRoot(str(own_label_studio.document_root))
    with SiteServer(tmp_path / "site" / "site") as site:
        summary = demo_flow(
            DemoParams(
                site_url=site.url,
                truth_path=str(tmp_path / "site" / "truth.json"),
                labels=list(TOPICS),
                task="text",
                budgets=[16, 12],
                gold_count=8,
                data_root=root.url,
                timeout_s=1200,
                project_title="Flywheel text e2e",
                dataset="text-e2e",
            )
        )
    json.dumps(summary)
    round1, round2 = summary["label_rounds"]
    assert round1["strategy"] == "typiclust" and round1["model_version"] is None
    assert round2["strategy"] == "hybrid" and round2["model_version"] == summary["models"][0]["version"]
    assert round2["predictions_pushed"] == round2["tasks_pushed"]
    assert [r["version"] for r in summary["releases"]] == ["v0001", "v0002"]
    assert [m["release"] for m in summary["models"]] == ["v0001", "v0002"]

    # the releases hold text records with topic labels, mostly right (5/10/20% annotator noise, Dawid-Skene)
    v2 = load_release(root, "text-e2e", "v0002")
    assert v2.manifest["task"] == "text"
    rows = [
        r for split in ("train", "val", "test") for r in v2.split(split).select(["kind", "url", "label"]).to_pylist()
    ]
    assert rows and all(r["kind"] == "text" for r in rows)
    right = [r["label"] == topic_of.get(urlsplit(r["url"]).path) for r in rows if urlsplit(r["url"]).path in topic_of]
    assert len(right) >= 20 and sum(right) / len(right) >= 0.8

    # the second model is a text model that knows the topics over the pool's text pages
    model = root.read_json(f"models/{summary['models'][1]['version']}/metrics.json")
    assert model["task"] == "text" and model["labels"] == sorted(TOPICS)
    predictions = root.read_table(f"models/{summary['models'][1]['version']}/predictions.parquet", schema=None)
    pool = root.read_tables([f"{summary['scrub']['output']}/kept"])
    url_of = dict(zip(pool.column("record_id").to_pylist(), pool.column("url").to_pylist(), strict=True))
    scored = [
        (topic_of[urlsplit(url_of[rid]).path], label)
        for rid, label in zip(
            predictions.column("record_id").to_pylist(), predictions.column("predicted_label").to_pylist(), strict=True
        )
        if urlsplit(url_of[rid]).path in topic_of
    ]
    assert len(scored) >= 40 and sum(t == p for t, p in scored) / len(scored) > 0.6  # chance is 0.25

    # Label Studio holds text tasks (no media), round 2's pre-annotated with the first model's topic
    client = LabelStudioClient(own_label_studio.url, own_label_studio.token)
    tasks = client.list_tasks(summary["label_studio"]["project_id"])
    assert len(tasks) == round1["tasks_pushed"] + round2["tasks_pushed"]
    assert all(t["data"]["text"] and "image" not in t["data"] for t in tasks)
    predicted = [p for t in tasks for p in t["predictions"]]
    assert len(predicted) == round2["tasks_pushed"]
    assert all(p["model_version"] == round2["model_version"] and p["result"][0]["to_name"] == "text" for p in predicted)

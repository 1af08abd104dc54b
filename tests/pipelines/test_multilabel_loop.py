"""The multi-label loop (`flywheel demo --task multilabel`) on a small sample site, against a real Label Studio
server and a real Prefect server: rounds answered as multiple choices, per-label aggregation, releases with
label sets, a BCE model, and round 2 chosen by that model's per-label margin and pre-annotated with its sets."""

from __future__ import annotations

from urllib.parse import urlsplit

import numpy as np
import pytest

from corpus.releases.versions import load_release
from corpus.settings import get_settings
from corpus.store import DataRoot
from labeling.client import LabelStudioClient
from labeling.round_store import load_round
from pipelines.demo.flow import DemoParams, demo_flow
from pipelines.demo.sample_images import CLASSES
from pipelines.demo.sample_site import generate_site
from pipelines.demo.site_server import SiteServer

pytestmark = [pytest.mark.e2e, pytest.mark.labelstudio, pytest.mark.prefect]


@pytest.fixture()
def demo_settings(prefect_api, own_label_studio, monkeypatch):
    monkeypatch.setenv("FLYWHEEL_LABEL_STUDIO_URL", own_label_studio.url)
    monkeypatch.setenv("FLYWHEEL_LABEL_STUDIO_TOKEN", own_label_studio.token)
    monkeypatch.setenv("FLYWHEEL_DATA_ROOT", str(own_label_studio.document_root))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def test_the_multilabel_demo_runs_the_whole_loop(
    prefect_api, own_label_studio, demo_settings, turning_flywheel, tmp_path
):
    truth = generate_site(tmp_path / "site", seed=3, images_per_class=14, multilabel=True)
    root = DataRoot(str(own_label_studio.document_root))
    with SiteServer(tmp_path / "site" / "site") as site:
        summary = demo_flow(
            DemoParams(
                site_url=site.url,
                truth_path=str(tmp_path / "site" / "truth.json"),
                labels=list(CLASSES),
                task="multilabel",
                budgets=[24, 16],
                data_root=root.url,
                timeout_s=1200,
                project_title="Flywheel multilabel e2e",
                dataset="ml",
            )
        )

    round1, round2 = summary["label_rounds"]
    assert round1["strategy"] == "diversity" and round1["model_version"] is None
    assert round2["strategy"] == "hybrid" and round2["model_version"] == summary["models"][0]["version"]
    assert round1["gold_tasks"] == 4 and round2["gold_tasks"] == 4
    for number in (1, 2):
        stored = load_round(root, "ml", number)
        assert stored.task == "multilabel" and stored.verdict["passed"], stored.verdict
        per_label = stored.summary["agreement"]["per_label"]
        assert set(per_label) == set(CLASSES) and all(a is None or -1 <= a <= 1 for a in per_label.values())
        assert set(stored.summary["gold_per_label"]) <= set(CLASSES)
        assert all(c["gold_accuracy"] is not None for c in stored.summary["scorecards"])

    # releases carry label sets, the label list and per-label counts
    truth_sets = {path: info.get("labels") for path, info in truth["images"].items()}
    for version in ("v0001", "v0002"):
        release = load_release(root, "ml", version)
        assert release.manifest["task"] == "multilabel"
        assert set(release.manifest["labels"]) <= set(CLASSES) and len(release.manifest["labels"]) >= 3
        train = release.train.to_pylist()
        assert all(isinstance(r["labels"], list) for r in train)
        right = [set(r["labels"]) == set(truth_sets.get(urlsplit(r["url"]).path) or []) for r in train]
        assert sum(right) / len(right) > 0.8  # per-label Dawid-Skene over noisy answers
        counts = release.manifest["class_counts"]["train"]
        assert counts == {n: sum(n in r["labels"] for r in train) for n in counts}

    # the models are multi-label, and round 2 was pre-annotated with their predicted sets
    for model in summary["models"]:
        assert model["task"] == "multilabel" and model["test_micro_f1"] is not None
    predictions = root.read_table(f"models/{summary['models'][1]['version']}/predictions.parquet", schema=None)
    probs = np.asarray(predictions.column("probs").to_pylist())
    assert probs.shape[1] == len(load_release(root, "ml", "v0002").manifest["labels"])
    assert not np.allclose(probs.sum(1), 1.0)  # per-label sigmoids

    client = LabelStudioClient(own_label_studio.url, own_label_studio.token)
    project_id = summary["label_studio"]["project_id"]
    assert 'choice="multiple"' in client.get_project(project_id)["label_config"]
    tasks = client.list_tasks(project_id)
    assert len(tasks) == round1["tasks_pushed"] + round2["tasks_pushed"]
    predicted = [p for t in tasks for p in t["predictions"]]
    assert len(predicted) == round2["tasks_pushed"]
    assert all(p["model_version"] == round2["model_version"] and 0.5 <= p["score"] <= 1 for p in predicted)
    assert all(set(p["result"][0]["value"]["choices"]) <= set(CLASSES) for p in predicted)
    answers = [a["result"][0]["value"]["choices"] for t in tasks for a in t["annotations"] if a["result"]]
    assert any(len(chosen) >= 2 for chosen in answers)  # several classes at once

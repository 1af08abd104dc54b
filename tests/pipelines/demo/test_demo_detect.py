"""`flywheel demo --task detect`'s loop on a small object site, against a real Label Studio and Prefect server:
boxes drawn by the simulated crowd, closed, released with fused boxes, a detector trained, round 2 chosen by it."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from corpus.boxes import box_set_from_rows
from corpus.releases.versions import load_release
from corpus.settings import get_settings
from corpus.store import DataRoot
from labeling.box_predictions import PREANNOTATION_MIN_SCORE
from labeling.box_quality import compute_box_f1
from labeling.client import LabelStudioClient
from pipelines.demo.flow import DemoParams, demo_flow
from pipelines.demo.object_demo import read_pool_box_truth
from pipelines.demo.sample_objects import OBJECT_CLASSES, generate_object_site
from pipelines.demo.site_server import SiteServer
from pipelines.demo.summary import render_summary
from training.registry import read_metadata, read_predictions

pytestmark = [pytest.mark.e2e, pytest.mark.labelstudio, pytest.mark.prefect]


@pytest.fixture()
def detect_settings(prefect_api, own_label_studio, monkeypatch):
    monkeypatch.setenv("FLYWHEEL_LABEL_STUDIO_URL", own_label_studio.url)
    monkeypatch.setenv("FLYWHEEL_LABEL_STUDIO_TOKEN", own_label_studio.token)
    monkeypatch.setenv("FLYWHEEL_DATA_ROOT", str(own_label_studio.document_root))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def _released_rows(root: DataRoot, version: str) -> list[dict]:
    rows = []
    for split in ("train", "val", "test"):
        table = root.read_table(f"releases/demo-detect/{version}/{split}.parquet", schema=None)
        rows += table.select(["record_id", "boxes"]).to_pylist()
    return rows


def test_the_detect_demo_runs_the_whole_loop(
    prefect_api, own_label_studio, detect_settings, turning_flywheel, tmp_path
):
    generate_object_site(tmp_path / "site", n=60, seed=3)
    root = DataRoot(str(own_label_studio.document_root))
    with SiteServer(tmp_path / "site" / "site") as site:
        summary = demo_flow(
            DemoParams(
                site_url=site.url,
                truth_path=str(tmp_path / "site" / "truth.json"),
                labels=list(OBJECT_CLASSES),
                task="detect",
                budgets=[30, 12],
                gold_count=8,
                data_root=root.url,
                timeout_s=1200,
                project_title="Flywheel detect e2e",
                dataset="demo-detect",
            )
        )
    json.dumps(summary)  # plain JSON types only

    round1, round2 = summary["label_rounds"]
    assert round1["strategy"] == "diversity" and round1["model_version"] is None
    first_model, second_model = summary["models"]
    assert round2["strategy"] == "distinct" and round2["model_version"] == first_model["version"]
    assert round1["tasks_pushed"] == 30 + 4 and round2["tasks_pushed"] == 12 + 4
    assert round1["gold_tasks"] == 4 and round2["gold_tasks"] == 4
    for round_ in (round1, round2):
        assert round_["task"] == "detect" and round_["box_f1"] >= 0.6 and round_["gold_box_f1"] >= 0.6
        gate = round_["quality_gate"]
        assert gate["passed"] and set(gate) == {"passed", "box_f1", "gold_box_f1", "new_labels"}

    # two releases whose boxes are the crowd's fused boxes: they match the truth the pipeline never read
    assert [r["version"] for r in summary["releases"]] == ["v0001", "v0002"]
    assert all(r["task"] == "detect" for r in summary["releases"])
    pool = f"{summary['scrub']['output']}/kept"
    truth = read_pool_box_truth(root.url, pool, str(tmp_path / "site" / "truth.json"))
    for version in ("v0001", "v0002"):
        assert load_release(root, "demo-detect", version).manifest["task"] == "detect"
        rows = _released_rows(root, version)
        assert sum(len(r["boxes"]) for r in rows) >= len(rows)  # 1-4 objects per image
        assert {b["label"] for r in rows for b in r["boxes"]} <= set(OBJECT_CLASSES)
        f1 = [compute_box_f1(box_set_from_rows(r["boxes"]), box_set_from_rows(truth[r["record_id"]][0])) for r in rows]
        assert sum(f1) / len(f1) >= 0.7, version
    assert len(_released_rows(root, "v0002")) > len(_released_rows(root, "v0001"))

    # a detector per release, its mAP in its metrics and in the summary; its boxes scored the pool
    assert [m["release"] for m in summary["models"]] == ["v0001", "v0002"]
    for model in (first_model, second_model):
        meta = read_metadata(root, model["version"])
        assert meta["task"] == "detect" and model["task"] == "detect"
        assert meta["test_map_50"] is not None and 0.0 <= model["test_map_50"] <= 1.0
        assert model["test_map_50_95"] == meta["test_map_50_95"] is not None
        predictions = read_predictions(root, model["version"])
        assert predictions.num_rows >= 30 and any(predictions.column("boxes").to_pylist())

    # round 2's tasks carry the first detector's rectangles as pre-annotations
    client = LabelStudioClient(own_label_studio.url, own_label_studio.token)
    tasks = client.list_tasks(summary["label_studio"]["project_id"])
    assert len(tasks) == round1["tasks_pushed"] + round2["tasks_pushed"]
    predicted = [t for t in tasks if t["predictions"]]
    assert len(predicted) == round2["tasks_pushed"] == round2["predictions_pushed"]
    regions = [region for t in predicted for p in t["predictions"] for region in p["result"]]
    assert all(
        p["model_version"] == first_model["version"] and 0 <= p["score"] <= 1
        for t in predicted
        for p in t["predictions"]
    )
    assert all(r["type"] == "rectanglelabels" and 0 <= r["score"] <= 1 for r in regions)
    # every box the first detector scored at the pre-annotation threshold or above is a rectangle of its task
    found = read_predictions(root, first_model["version"])
    sure = {
        rid: sum(b["score"] >= PREANNOTATION_MIN_SCORE for b in boxes or [])
        for rid, boxes in zip(found.column("record_id").to_pylist(), found.column("boxes").to_pylist(), strict=True)
    }
    assert {t["data"]["record_id"]: len(t["predictions"][0]["result"]) for t in predicted} == {
        t["data"]["record_id"]: sure[t["data"]["record_id"]] for t in predicted
    }
    assert {r["value"]["rectanglelabels"][0] for r in regions} <= set(OBJECT_CLASSES)

    console = Console(width=240, record=True)
    console.print(render_summary(summary))
    shown = console.export_text()
    assert f"model {second_model['version']}" in shown and "test mAP@0.5" in shown and "box F1" in shown

"""The whole loop on a small sample site, against a real Label Studio server and a real Prefect server."""

from __future__ import annotations

import io
import json
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image

from corpus.releases.versions import load_release
from corpus.settings import get_settings
from corpus.store import DataRoot
from labeling.client import LabelStudioClient
from pipelines.demo.flow import DemoParams, demo_flow
from pipelines.demo.sample_images import CLASSES
from pipelines.demo.sample_site import generate_site
from pipelines.demo.site_server import SiteServer
from pipelines.demo.summary import build_summary

pytestmark = [pytest.mark.e2e, pytest.mark.labelstudio, pytest.mark.prefect]

GPS_IFD = 0x8825


@pytest.fixture()
def demo_settings(prefect_api, own_label_studio, monkeypatch):
    from prefect.blocks.system import Secret

    # The token reaches the tasks through a Prefect Secret block; the plain setting is wrong on purpose.
    Secret(value=own_label_studio.token).save("flywheel-e2e-label-studio-token", overwrite=True)
    monkeypatch.setenv("FLYWHEEL_LABEL_STUDIO_URL", own_label_studio.url)
    monkeypatch.setenv("FLYWHEEL_LABEL_STUDIO_TOKEN", "not-the-token")
    monkeypatch.setenv("FLYWHEEL_LABEL_STUDIO_TOKEN_SECRET", "flywheel-e2e-label-studio-token")
    monkeypatch.setenv("FLYWHEEL_DATA_ROOT", str(own_label_studio.document_root))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def _round_events(dataset: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    with get_client(sync_client=True) as client:
        page = client.read_events(
            EventFilter(
                event=EventNameFilter(prefix=["flywheel.round."]),
                resource=EventResourceFilter(id=[f"flywheel.dataset.{dataset}"]),
            ),
            limit=50,  # the client's default (100) is above the server's maximum page
        )
    return page.events


async def _runs_and_artifacts() -> tuple[list, list]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return await client.read_flow_runs(limit=200), await client.read_artifacts(limit=200)


def test_demo_runs_the_whole_loop(prefect_api, own_label_studio, demo_settings, turning_flywheel, tmp_path, caplog):
    import asyncio

    truth = generate_site(tmp_path / "site", seed=3, images_per_class=14)
    planted = [value for values in truth["pii"].values() for value in values]
    root = DataRoot(str(own_label_studio.document_root))
    with SiteServer(tmp_path / "site" / "site") as site:
        summary = demo_flow(
            DemoParams(
                site_url=site.url,
                truth_path=str(tmp_path / "site" / "truth.json"),
                labels=list(CLASSES),
                budgets=[24, 16],
                data_root=root.url,
                timeout_s=1200,
                project_title="Flywheel e2e",
                dataset="e2e",  # the session's Label Studio root is shared: keep this test's models apart
            )
        )

    # the summary's contract
    assert set(summary) >= {"crawl", "curate", "scrub", "label_rounds", "releases", "models", "label_studio"}
    json.dumps(summary)  # plain JSON types only: scripts read data/demo/summary.json
    crawl, curate, scrub = summary["crawl"], summary["curate"], summary["scrub"]
    assert crawl["pages"] > 3 and crawl["images"] > 0
    defects = [d for img in truth["images"].values() for d in img["defects"]]
    assert curate["exact_duplicates"] >= defects.count("exact_duplicate")
    assert curate["near_duplicates"] >= 1
    broken = sum(curate["dropped_by_reason"].get(reason, 0) for reason in ("undecodable", "truncated"))
    assert broken >= defects.count("corrupt")
    assert curate["dropped_by_reason"].get("too_small", 0) >= defects.count("tiny")
    assert curate["dropped_by_reason"].get("duplicate_page", 0) >= 1
    assert {"email", "phone", "credit_card"} <= {k for k, n in scrub["pii_by_type"].items() if n > 0}
    assert scrub["faces_blurred"] >= 1
    assert scrub["exif_stripped"] >= 1

    round1, round2 = summary["label_rounds"]
    assert round1["strategy"] == "diversity" and round1["model_version"] is None
    assert round2["strategy"] == "hybrid" and round2["model_version"] == summary["models"][0]["version"]
    assert round1["gold_tasks"] == 4 and round2["gold_tasks"] == 4  # known answers mixed into each batch
    assert round1["tasks_pushed"] == 24 + 4 and round2["tasks_pushed"] == 16 + 4
    assert round2["predictions_pushed"] == round2["tasks_pushed"]
    cards = {card["annotator"]: card for card in round1["annotators"]}
    assert len(cards) == 3 and all(card["gold_accuracy"] is not None for card in cards.values())
    assert round1["review_queue"] is not None
    assert round1["annotations"] > round1["tasks_pushed"] * 0.9  # tasks with no truth get no answer
    assert 0.5 <= round1["agreement"] <= 1.0
    # each round's quality gate (the demo's own: DemoParams.gate) is in the summary and was announced
    gates = [r["quality_gate"] for r in (round1, round2)]
    for gate in gates:
        assert set(gate) == {"passed", "krippendorff_alpha", "gold_accuracy", "new_labels"}
        assert gate["krippendorff_alpha"]["threshold"] == 0.5 and gate["new_labels"]["threshold"] == 10
        assert gate["passed"] == all(gate[name]["ok"] for name in gate if name != "passed")
    assert gates[0]["gold_accuracy"]["value"] is not None and gates[0]["new_labels"]["value"] >= 20
    announced = sorted(event.event for event in _round_events("e2e"))
    expected = sorted(f"flywheel.round.{'passed' if gate['passed'] else 'failed'}" for gate in gates)
    assert announced == expected
    passed = [e for e in _round_events("e2e") if e.event == "flywheel.round.passed"]
    assert all(e.payload["data_root"] == root.url and e.payload["pool"] for e in passed)
    assert [r["version"] for r in summary["releases"]] == ["v0001", "v0002"]
    assert summary["releases"][1]["parent"] == "v0001"
    v2 = summary["releases"][1]
    assert v2["train"] + v2["val"] + v2["test"] > summary["releases"][0]["train"]
    assert [m["release"] for m in summary["models"]] == ["v0001", "v0002"]
    assert all(0.0 <= m["test_accuracy"] <= 1.0 for m in summary["models"])
    # The second model is compared with the first on the same fixed eval set, which v0002 kept from v0001.
    eval_sets = [load_release(root, "e2e", r["version"]).manifest["eval_set"] for r in summary["releases"]]
    assert set(eval_sets[0]["record_ids"]) <= set(eval_sets[1]["record_ids"]) and eval_sets[1]["since"] == "v0001"
    assert list(summary["models"][1]["eval_by_version"]) == ["v0001", "v0002"]
    assert summary["models"][1]["eval_set_items"] == eval_sets[1]["size"]
    # The second model knows the classes: over every scored pool image (most of them never labeled, so
    # this is mostly out of sample) it beats chance by far. Its test split is a handful of items here.
    predictions = root.read_table(f"models/{summary['models'][1]['version']}/predictions.parquet", schema=None)
    pool = root.read_tables([f"{summary['scrub']['output']}/kept"])
    url_of = dict(zip(pool.column("record_id").to_pylist(), pool.column("url").to_pylist(), strict=True))
    truth_of = {rid: truth["images"].get(urlsplit(url).path, {}).get("label") for rid, url in url_of.items()}
    scored = [
        (truth_of[rid], label)
        for rid, label in zip(
            predictions.column("record_id").to_pylist(), predictions.column("predicted_label").to_pylist(), strict=True
        )
        if truth_of.get(rid)
    ]
    assert len(scored) >= 40
    assert sum(t == p for t, p in scored) / len(scored) > 1.5 / len(CLASSES)  # 0.5 measured; chance is 0.25

    # Label Studio holds exactly what was pushed, with round 2's predictions and both rounds' annotations
    client = LabelStudioClient(own_label_studio.url, own_label_studio.token)
    project_id = summary["label_studio"]["project_id"]
    tasks = client.list_tasks(project_id)
    pushed = round1["tasks_pushed"] + round2["tasks_pushed"]
    assert len(tasks) == pushed
    assert len({t["data"]["record_id"] for t in tasks}) == pushed
    predicted = [t for t in tasks if t["predictions"]]
    assert len(predicted) == round2["tasks_pushed"]
    assert all(
        p["model_version"] == round2["model_version"] and 0 <= p["score"] <= 1
        for t in predicted
        for p in t["predictions"]
    )
    annotators = {a["completed_by"] for t in tasks for a in t["annotations"]}
    assert len(annotators) >= 2
    assert client.get_project(project_id)["model_version"] == round2["model_version"]

    # no planted PII value reached Label Studio or a release; pushed images carry no GPS
    pushed_text = json.dumps([t["data"] for t in tasks])
    assert not [value for value in planted if value in pushed_text]
    for version in ("v0001", "v0002"):
        for split in ("train", "val", "test"):
            table = root.read_table(f"releases/e2e/{version}/{split}.parquet", schema=None)
            text = json.dumps([r for r in table.drop_columns(["image"]).to_pylist()], default=str)
            assert not [value for value in planted if value in text]
    image_url = own_label_studio.url + tasks[0]["data"]["image"]
    response = httpx.get(image_url, headers={"Authorization": f"Token {own_label_studio.token}"})
    assert response.status_code == 200
    assert GPS_IFD not in Image.open(io.BytesIO(response.content)).getexif()
    # the token stayed out of logs, flow run parameters and artifacts
    runs, artifacts = asyncio.run(_runs_and_artifacts())
    assert len(runs) >= 10  # demo, ingest, crawl, curate, then round, push, release, train per round
    exposed = caplog.text + json.dumps([r.parameters for r in runs], default=str)
    exposed += json.dumps([a.data for a in artifacts], default=str)
    assert any(a.key == "round-e2e" for a in artifacts)  # the round's progress, then its verdict
    assert own_label_studio.token not in exposed
    for table_path in root.list("media"):
        assert GPS_IFD not in Image.open(io.BytesIO(root.read_bytes(table_path))).getexif()


def test_build_summary_has_the_documented_shape():
    ingest = {
        "crawl": {"pages": 3, "images": 5},
        "curate": {"kept": 4, "dropped": 1, "dropped_by_reason": {"too_small": 1}, "counters": {}, "output": "c"},
        "scrub": {"counters": {"pii_email": 2, "faces_blurred": 1}, "output": "s"},
    }
    rounds = [
        {
            "round": 1,
            "strategy": "diversity",
            "model_version": None,
            "tasks_pushed": 4,
            "predictions_pushed": 0,
            "annotations": 5,
            "labeled_records": 4,
            "agreement": {"percent_agreement": 1.0, "items_with_overlap": 1},
            "project_id": 7,
            "project_url": "http://127.0.0.1:1/projects/7",
            "quality_gate": {
                "passed": False,
                "criteria": [{"name": "new_labels", "value": 4.0, "threshold": 20.0, "ok": False, "reason": "r"}],
                "reasons": ["r"],
            },
        }
    ]
    releases = [{"version": "v0001", "parent": None, "rows": {"train": 2, "val": 1, "test": 1}}]
    models = [{"model_version": "demo-v0001-m001", "release": "v0001", "test_accuracy": 1.0}]
    summary = build_summary(ingest, rounds, releases, models)
    assert summary["scrub"]["pii_by_type"] == {"email": 2}
    assert summary["releases"] == [{"version": "v0001", "parent": None, "train": 2, "val": 1, "test": 1, "path": None}]
    assert summary["label_studio"] == {"url": "http://127.0.0.1:1/projects/7", "project_id": 7}
    assert summary["label_rounds"][0]["agreement"] == 1.0
    assert summary["label_rounds"][0]["quality_gate"] == {
        "passed": False,
        "new_labels": {"value": 4.0, "threshold": 20.0, "ok": False},
    }

"""deploy/prefect.yaml registers the loop: a label round that passes its quality gate starts a release through
its event trigger, and a published release starts training through its own."""

from __future__ import annotations

import asyncio
import inspect
import time
from pathlib import Path

import pytest
import yaml
from labeled_pools import make_labeled_pool
from prefect.events import DeploymentEventTrigger

from corpus.settings import Settings
from corpus.store import DataRoot
from pipelines import imports, ingest, pretrain, release, round_close, rounds, train
from pipelines.config import ImportParams, IngestParams, LabelRoundParams, PretrainParams, ReleaseParams, TrainParams
from pipelines.demo import services
from pipelines.release import release_flow
from pipelines.runtime import ROUND_FAILED, ROUND_PASSED, announce
from pipelines.train import train_on_release_flow

pytestmark = pytest.mark.prefect

REPO_ROOT = Path(__file__).resolve().parents[2]
PREFECT_YAML = REPO_ROOT / services.PREFECT_FILE


def _deployments() -> dict[str, dict]:
    return {d["name"]: d for d in yaml.safe_load(PREFECT_YAML.read_text())["deployments"]}


def test_prefect_yaml_declares_every_deployment_with_valid_parameters():
    deployments = _deployments()
    assert set(deployments) == {
        "import",
        "ingest-nightly",
        "label-round",
        "label-check",
        "label-close",
        "label-next-round",
        "release",
        "train",
        "pretrain",
        "train-on-release",
    }
    assert deployments["ingest-nightly"]["schedules"] == [{"cron": "0 3 * * *", "timezone": "UTC"}]
    assert deployments["label-round"]["schedules"] == [{"cron": "0 7 * * 1-5", "timezone": "UTC"}]
    models = {
        "import": ImportParams,
        "ingest-nightly": IngestParams,
        "label-round": LabelRoundParams,
        "release": ReleaseParams,
        "train": TrainParams,
        "pretrain": PretrainParams,
    }
    for name, model in models.items():
        model.model_validate(deployments[name]["parameters"]["params"])  # the UI form's defaults are valid
    for deployment in deployments.values():
        module, _, function = deployment["entrypoint"].partition(":")
        flows = {"pipelines/ingest.py": ingest, "pipelines/rounds.py": rounds, "pipelines/release.py": release}
        flows.update(
            {"pipelines/train.py": train, "pipelines/round_close.py": round_close, "pipelines/imports.py": imports}
        )
        flows["pipelines/pretrain.py"] = pretrain
        assert hasattr(getattr(flows[module], function), "deploy")
        assert deployment["work_pool"]["name"] == services.WORK_POOL
    (trigger,) = deployments["train-on-release"]["triggers"]
    parsed = DeploymentEventTrigger.model_validate({k: v for k, v in trigger.items() if k != "type"})
    assert parsed.expect == {"flywheel.dataset.released"}
    assert set(trigger["parameters"]) == set(inspect.signature(train_on_release_flow.fn).parameters)
    (trigger,) = deployments["release"]["triggers"]
    parsed = DeploymentEventTrigger.model_validate({k: v for k, v in trigger.items() if k != "type"})
    assert parsed.expect == {"flywheel.round.passed"}
    assert set(trigger["parameters"]) == {"params"}
    assert set(trigger["parameters"]["params"]) <= set(ReleaseParams.model_fields)
    # the round's own automations: every templated parameter is one the flow takes
    for name, flow_fn, event in (
        ("label-close", round_close.label_close_flow, "flywheel.round.complete"),
        ("label-next-round", rounds.label_next_round_flow, "flywheel.model.trained"),
        ("label-check", round_close.label_check_flow, "flywheel.labelstudio.annotation"),
    ):
        (trigger,) = deployments[name]["triggers"]
        parsed = DeploymentEventTrigger.model_validate({k: v for k, v in trigger.items() if k != "type"})
        assert parsed.expect == {event}
        assert set(trigger.get("parameters") or {}) <= set(inspect.signature(flow_fn.fn).parameters)
    assert deployments["label-check"]["schedules"] == [{"cron": "*/10 * * * *", "timezone": "UTC"}]
    assert deployments["label-round"]["parameters"]["params"]["if_open"] == "skip"


def _dataset_of(run, data_root: str | None = None) -> str | None:
    """The dataset a deployment run works on; None when it works on another data root than `data_root`."""
    params = run.parameters or {}
    params = params.get("params") or params
    if data_root is not None and params.get("data_root") != data_root:
        return None
    return params.get("dataset")


async def _deployment_state(name: str, timeout_s: float, dataset: str = "colours", data_root: str | None = None):
    """The first finished run of deployment `name` for `dataset` in `data_root` (the session's server also holds
    other tests' runs, and their events may have started runs that wait for a worker)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    deadline = time.monotonic() + timeout_s
    async with get_client() as client:
        while time.monotonic() < deadline:
            runs = await client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name]))
            )
            done = [r for r in runs if r.state and r.state.is_final() and _dataset_of(r, data_root) == dataset]
            if done:
                return done[0]
            await asyncio.sleep(2)
    return None


async def _registered() -> tuple[dict, list]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        deployments = {d.name: d for d in await client.read_deployments()}
        automations = await client.read_automations()
    return deployments, automations


def test_ui_setup_registers_deployments_and_a_passed_round_releases_and_trains(prefect_api, tmp_path):
    root = DataRoot(str(tmp_path / "data"))
    pool = make_labeled_pool(root)
    settings = Settings(data_root=str(tmp_path / "services"), project_dir=REPO_ROOT)
    services.register_deployments(settings, prefect_api)
    deployments, automations = asyncio.run(_registered())
    assert set(deployments) >= set(_deployments())
    assert deployments["ingest-nightly"].schedules[0].schedule.cron == "0 3 * * *"
    assert deployments["label-round"].schedules[0].schedule.cron == "0 7 * * 1-5"
    assert [a for a in automations if a.trigger.expect == {"flywheel.dataset.released"}]
    (on_round,) = [a for a in automations if a.trigger.expect == {"flywheel.round.passed"}]
    assert [action.deployment_id for action in on_round.actions] == [deployments["release"].id]

    worker = services.ServiceState("worker", services.run_dir_of(settings))
    services.start_worker(
        settings,
        prefect_api,
        env={
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "FLYWHEEL_DATA_ROOT": str(tmp_path / "other"),  # the event's data_root must win over settings
            "NO_ALBUMENTATIONS_UPDATE": "1",
        },
    )
    try:
        # What label-close announces: a failed round releases nothing, a passed one starts the release
        # deployment, whose release starts the train-on-release deployment.
        for dataset, event in (("rejected", ROUND_FAILED), ("colours", ROUND_PASSED)):
            payload = {"dataset": dataset, "data_root": root.url, "pool": pool, "gold_path": None, "round": None}
            announce(event, dataset, payload)
        release = asyncio.run(_deployment_state("release", timeout_s=300, data_root=root.url))
        log = worker.log_file.read_text()[-3000:] if worker.log_file.exists() else ""
        assert release is not None, log
        assert release.state.is_completed(), log
        assert release.parameters["params"] == {
            "dataset": "colours",
            "data_root": root.url,
            "pool": pool,
            "gold_path": None,
            "round": None,
        }
        assert root.read_json("releases/colours/v0001/manifest.json")["version"] == "v0001"
        run = asyncio.run(_deployment_state("train-on-release", timeout_s=420, data_root=root.url))
        log = worker.log_file.read_text()[-3000:] if worker.log_file.exists() else ""
        assert run is not None, log
        assert run.state.is_completed(), log
        assert run.parameters["dataset"] == "colours" and run.parameters["version"] == "v0001"
        (model,) = root.list_dirs("models")
        assert root.read_json(f"models/{model}/metrics.json")["release"] == "v0001"
        assert root.exists(f"models/{model}/predictions.parquet")
        assert not root.exists("releases/rejected")
        releases = asyncio.run(_deployment_runs("release"))
        assert "rejected" not in [_dataset_of(r, root.url) for r in releases]  # a failed round is never released
        assert [_dataset_of(r, root.url) for r in releases].count("colours") == 1
    finally:
        services.stop_service(worker)


async def _deployment_runs(name: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    async with get_client() as client:
        return await client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name])))


def test_train_on_release_flow_trains_by_hand(prefect_api, tmp_path):
    root = DataRoot(str(tmp_path / "data"))
    pool = make_labeled_pool(root, per_class=10, seed=1)
    release_flow(ReleaseParams(dataset="colours", pool=pool, data_root=root.url))
    metrics = train_on_release_flow(dataset="colours", version="latest", data_root=root.url, pool=pool)
    # colour is the whole signal here: anything near chance means the loop is broken
    assert metrics["test_accuracy"] >= 0.75
    assert metrics["scored"] == 40

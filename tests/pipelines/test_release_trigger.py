"""deploy/prefect.yaml registers the loop; a published release starts training through its event trigger."""

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
from pipelines import flows, services
from pipelines.config import IngestParams, LabelRoundParams, ReleaseParams, TrainParams
from pipelines.flows import release_flow, train_on_release_flow

pytestmark = pytest.mark.prefect

REPO_ROOT = Path(__file__).resolve().parents[2]
PREFECT_YAML = REPO_ROOT / services.PREFECT_FILE


def _deployments() -> dict[str, dict]:
    return {d["name"]: d for d in yaml.safe_load(PREFECT_YAML.read_text())["deployments"]}


def test_prefect_yaml_declares_every_deployment_with_valid_parameters():
    deployments = _deployments()
    assert set(deployments) == {"ingest-nightly", "label-round", "release", "train", "train-on-release"}
    assert deployments["ingest-nightly"]["schedules"] == [{"cron": "0 3 * * *", "timezone": "UTC"}]
    models = {
        "ingest-nightly": IngestParams,
        "label-round": LabelRoundParams,
        "release": ReleaseParams,
        "train": TrainParams,
    }
    for name, model in models.items():
        model.model_validate(deployments[name]["parameters"]["params"])  # the UI form's defaults are valid
    for deployment in deployments.values():
        module, _, function = deployment["entrypoint"].partition(":")
        assert module == "pipelines/flows.py" and hasattr(getattr(flows, function), "deploy")
        assert deployment["work_pool"]["name"] == services.WORK_POOL
    (trigger,) = deployments["train-on-release"]["triggers"]
    parsed = DeploymentEventTrigger.model_validate({k: v for k, v in trigger.items() if k != "type"})
    assert parsed.expect == {"flywheel.dataset.released"}
    assert set(trigger["parameters"]) == set(inspect.signature(train_on_release_flow.fn).parameters)


async def _deployment_state(name: str, timeout_s: float):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    deadline = time.monotonic() + timeout_s
    async with get_client() as client:
        while time.monotonic() < deadline:
            runs = await client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name]))
            )
            done = [r for r in runs if r.state and r.state.is_final()]
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


def test_ui_setup_registers_deployments_and_a_release_triggers_training(prefect_api, tmp_path):
    root = DataRoot(str(tmp_path / "data"))
    pool = make_labeled_pool(root)
    settings = Settings(data_root=str(tmp_path / "services"), project_dir=REPO_ROOT)
    services.register_deployments(settings, prefect_api)
    deployments, automations = asyncio.run(_registered())
    assert set(deployments) >= set(_deployments())
    assert deployments["ingest-nightly"].schedules[0].schedule.cron == "0 3 * * *"
    assert [a for a in automations if a.trigger.expect == {"flywheel.dataset.released"}]

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
        manifest = release_flow(ReleaseParams(dataset="colours", pool=pool, data_root=root.url))
        assert manifest["version"] == "v0001"
        run = asyncio.run(_deployment_state("train-on-release", timeout_s=420))
        log = worker.log_file.read_text()[-3000:] if worker.log_file.exists() else ""
        assert run is not None, log
        assert run.state.is_completed(), log
        assert run.parameters["dataset"] == "colours" and run.parameters["version"] == "v0001"
        (model,) = root.list_dirs("models")
        assert root.read_json(f"models/{model}/metrics.json")["release"] == "v0001"
        assert root.exists(f"models/{model}/predictions.parquet")
    finally:
        services.stop_service(worker)


def test_train_on_release_flow_trains_by_hand(prefect_api, tmp_path):
    root = DataRoot(str(tmp_path / "data"))
    pool = make_labeled_pool(root, per_class=10, seed=1)
    release_flow(ReleaseParams(dataset="colours", pool=pool, data_root=root.url))
    metrics = train_on_release_flow(dataset="colours", version="latest", data_root=root.url, pool=pool)
    # colour is the whole signal here: anything near chance means the loop is broken
    assert metrics["test_accuracy"] >= 0.75
    assert metrics["scored"] == 40

"""Publishing a release emits flywheel.dataset.released and the served training deployment trains on it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from labeled_pools import make_labeled_pool

from corpus.settings import get_settings
from corpus.store import DataRoot
from pipelines.config import ReleaseParams
from pipelines.deployments import TRAIN_ON_RELEASE, build_deployments
from pipelines.flows import release_flow, train_on_release_flow

pytestmark = pytest.mark.prefect


def test_deployments_cover_the_loop_and_train_has_the_release_trigger():
    deployments = {d.name: d for d in build_deployments(get_settings())}
    assert set(deployments) == {"ingest-nightly", "label-round", "release", "train", TRAIN_ON_RELEASE}
    assert deployments["ingest-nightly"].schedules[0].schedule.cron == "0 3 * * *"
    (trigger,) = deployments[TRAIN_ON_RELEASE].triggers
    assert trigger.expect == {"flywheel.dataset.released"}
    assert set(trigger.parameters) == {"dataset", "version", "data_root", "pool"}
    with pytest.raises(ValueError, match="unknown deployments"):
        build_deployments(get_settings(), only={"nope"})


async def _wait_for_triggered_run(deployment_name: str, timeout_s: float):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    deadline = time.monotonic() + timeout_s
    async with get_client() as client:
        while time.monotonic() < deadline:
            runs = await client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment_name]))
            )
            done = [r for r in runs if r.state and r.state.is_final()]
            if done:
                return done[0]
            time.sleep(2)
    return None


def test_a_published_release_triggers_a_training_run(prefect_api, tmp_path):
    import asyncio

    from prefect.client.orchestration import get_client

    root = DataRoot(str(tmp_path / "data"))
    pool = make_labeled_pool(root)
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_api,
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "FLYWHEEL_DATA_ROOT": str(tmp_path / "other"),  # the event's data_root must win over settings
        "NO_ALBUMENTATIONS_UPDATE": "1",
    }
    flywheel = Path(sys.executable).with_name("flywheel")
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    serve = subprocess.Popen(
        [str(flywheel), "serve", "--only", TRAIN_ON_RELEASE],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        async def wait_for_deployment():
            async with get_client() as client:
                for _ in range(120):
                    try:
                        return await client.read_deployment_by_name(f"train-on-release/{TRAIN_ON_RELEASE}")
                    except Exception:
                        await asyncio.sleep(1)
            return None

        deployment = asyncio.run(wait_for_deployment())
        assert deployment is not None, (tmp_path / "serve.log").read_text()[-3000:]
        time.sleep(3)  # the automation is registered with the deployment; give the trigger service a moment

        manifest = release_flow(ReleaseParams(dataset="colours", pool=pool, data_root=root.url))
        assert manifest["version"] == "v0001"

        run = asyncio.run(_wait_for_triggered_run(TRAIN_ON_RELEASE, timeout_s=300))
        assert run is not None, (tmp_path / "serve.log").read_text()[-3000:]
        assert run.state.is_completed(), (tmp_path / "serve.log").read_text()[-3000:]
        assert run.parameters["dataset"] == "colours"
        assert run.parameters["version"] == "v0001"
        models = root.list_dirs("models")
        assert len(models) == 1, models
        metrics = root.read_json(f"models/{models[0]}/metrics.json")
        assert metrics["release"] == "v0001"
        assert root.exists(f"models/{models[0]}/predictions.parquet")
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(timeout=30)
        log.close()


def test_train_on_release_flow_trains_by_hand(prefect_api, tmp_path):
    root = DataRoot(str(tmp_path / "data"))
    pool = make_labeled_pool(root, per_class=10, seed=1)
    release_flow(ReleaseParams(dataset="colours", pool=pool, data_root=root.url))
    metrics = train_on_release_flow(dataset="colours", version="latest", data_root=root.url, pool=pool)
    # colour is the whole signal here: anything near chance means the loop is broken
    assert metrics["test_accuracy"] >= 0.75
    assert metrics["scored"] == 40

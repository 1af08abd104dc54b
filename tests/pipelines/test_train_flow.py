"""`flywheel train --devices 2`: the train flow runs DDP under torchrun (2 gloo processes on CPU) and publishes
the model report as the run's Prefect artifact on a real Prefect server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from corpus.releases.build import build_release
from corpus.releases.config import ReleaseConfig
from corpus.store import DataRoot
from tests.training.conftest import _make_shape_records
from training.registry import list_models, read_metadata

REPO = Path(__file__).resolve().parents[2]


async def _artifact(key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async with get_client() as client:
        found = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return found


def test_cli_trains_on_two_processes_and_publishes_the_report_artifact(prefect_api, tmp_path):
    root = DataRoot(str(tmp_path / "data"))
    build_release(root, "ddp", _make_shape_records(8), ReleaseConfig(eval_set_size=4))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")}
    env.update(
        FLYWHEEL_DATA_ROOT=root.url,
        FLYWHEEL_WORK_DIR=str(tmp_path / "work"),
        PREFECT_API_URL=prefect_api,
        PYTHONPATH=str(REPO),
        NO_ALBUMENTATIONS_UPDATE="1",
        OMP_NUM_THREADS="1",
    )
    args = ["--release", "ddp@latest", "--devices", "2", "--epochs", "2", "--image-size", "32", "--batch-size", "4"]
    cmd = [sys.executable, "-m", "pipelines.cli", "train", *args, "--no-score-pool"]
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (model_version,) = list_models(root)  # two processes, one model: rank 0 alone publishes
    meta = read_metadata(root, model_version)
    assert meta["world_size"] == 2 and meta["config"]["devices"] == 2 and meta["eval_set"]["n"] >= 4
    assert json.loads(run.stdout[run.stdout.index("{") : run.stdout.rindex("}") + 1])["world_size"] == 2

    (artifact,) = asyncio.run(_artifact("model-ddp"))
    report = root.read_bytes(f"models/{model_version}/report.md").decode()
    assert artifact.type == "markdown" and artifact.data == report
    assert f"# Model {model_version}" in report and "| processes (DDP world size) | 2 |" in report
    assert "## Accuracy per version (same evaluation set)" in report and "eval-set accuracy" in artifact.description


def test_more_devices_than_the_machine_has_is_one_line(tmp_path):
    root = DataRoot(str(tmp_path / "data"))
    build_release(root, "ddp", _make_shape_records(2), ReleaseConfig())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLYWHEEL_", "PREFECT_"))}
    env.update(FLYWHEEL_DATA_ROOT=root.url, PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "pipelines.cli", "train", "--release", "ddp@latest", "--devices", "2"]
    run = subprocess.run([*cmd, "--device", "cuda"], cwd=tmp_path, env=env, capture_output=True, text=True)
    lines = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    assert run.returncode != 0 and len(lines) == 1, lines
    assert "devices=2 but this machine has 0 CUDA device(s)" in lines[0]
    assert not root.exists("models")

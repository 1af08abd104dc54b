"""`flywheel pretrain` end to end, as a user runs it: options checked first, an encoder of the latest pool."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from labeled_pools import make_labeled_pool

from corpus.pool import remember_pool
from corpus.store import DataRoot
from training.encoders import newest_embeddings

sys.path.insert(0, str(Path(__file__).parent))
from test_cli import FLYWHEEL, _env

pytestmark = pytest.mark.prefect


def _run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    env = {**_env(tmp_path), **env}
    return subprocess.run([*FLYWHEEL, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def test_pretrain_command_publishes_an_encoder_of_the_latest_pool(tmp_path, prefect_api) -> None:
    bad = _run(tmp_path, "pretrain", "--epochs", "0")
    lines = [line for line in (bad.stdout + bad.stderr).splitlines() if line.strip()]
    assert bad.returncode == 2 and len(lines) == 1 and "--epochs" in lines[0]
    root = DataRoot(str(tmp_path / "data"))
    missing = _run(tmp_path, "pretrain", "--pool", "curated/nothing/kept")
    assert missing.returncode == 2 and "pool 'curated/nothing/kept' not found" in missing.stdout
    remember_pool(root, make_labeled_pool(root, per_class=4, annotated=False))
    out = _run(
        tmp_path, "pretrain", "--epochs", "1", "--image-size", "32", "--batch-size", "8", PREFECT_API_URL=prefect_api
    )
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout[out.stdout.index("{") : out.stdout.rindex("}") + 1])
    assert report["encoder_version"] == "simclr-0001" and report["n_images"] == 16 and report["epochs"] == 1
    assert newest_embeddings(root)[1].num_rows == 16

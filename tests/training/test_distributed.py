"""DDP on CPU: torchrun with 2 gloo processes trains one model on a tiny release, on disjoint shards, and only
rank 0 publishes; the sampler's shards alone."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from corpus.releases.build import build_release
from corpus.releases.config import ReleaseConfig
from corpus.store import DataRoot
from training.distributed import ShardedEpochSampler
from training.registry import list_models, read_metadata

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_shards_are_disjoint_equal_and_cover_all_but_the_tail():
    shards = [list(ShardedEpochSampler(11, seed=3, rank=r, world_size=3)) for r in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]
    indices = [i for s in shards for _, i in s]
    assert len(set(indices)) == 9 and all(epoch == 0 for s in shards for epoch, _ in s)


def test_torchrun_two_gloo_processes_publish_one_model(tmp_path, make_shape_records):
    root = DataRoot(str(tmp_path / "root"))
    build_release(root, "shapes", make_shape_records(6), ReleaseConfig())
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={_free_port()}",
        str(REPO / "tests/training/ddp_worker.py"),
        str(tmp_path / "root"),
        str(out),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert list_models(root) == [ranks[0]["model_version"]] and ranks[1]["model_version"] is None
    meta = read_metadata(root, ranks[0]["model_version"])
    assert meta["world_size"] == 2 and meta["epochs_run"] == 2
    for epoch in (1, 2):
        seen = [{i for e, i in r["seen"] if e == epoch} for r in ranks]
        assert seen[0] and len(seen[0]) == len(seen[1]) and not seen[0] & seen[1], epoch
    assert not root.exists("models/.runs") or not root.list_dirs("models/.runs")

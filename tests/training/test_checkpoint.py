"""Tests for the fit loop's checkpoints: snapshots written off the training thread, none after the last epoch."""

from __future__ import annotations

import pytest
import torch

import training.loop as loop_module
from corpus.store import DataRoot
from training.config import TrainConfig
from training.data import EpochSampler
from training.loop import CheckpointWriter, FitState, Run, fit, load_checkpoint

CFG = TrainConfig(image_size=32, epochs=3, batch_size=4, width=4, num_workers=0, patience=10)


def _batches(n: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return [(torch.randn(4, 3, 32, 32, generator=gen), torch.randint(0, 2, (4,), generator=gen)) for _ in range(n)]


def test_a_checkpoint_is_a_snapshot_that_later_steps_do_not_change(tmp_path):
    root = DataRoot(str(tmp_path))
    run = Run(CFG, 2, torch.device("cpu"))
    run.train_epoch(_batches())
    state = FitState(best_state=loop_module.cpu_state(run.model))
    snapshot = state.checkpoint(run, 1)
    moments = {k: v["exp_avg"].clone() for k, v in run.optimizer.state_dict()["state"].items()}
    writer = CheckpointWriter(root, "run/last.pt")
    writer.submit(snapshot)
    run.train_epoch(_batches())  # moves the optimizer's moments in place while the write may be running
    writer.wait()
    written = load_checkpoint(root, "run/last.pt")
    assert written["epoch"] == 1
    assert all(torch.equal(written["optimizer"]["state"][k]["exp_avg"], m) for k, m in moments.items())
    now = run.optimizer.state_dict()["state"]
    assert not all(torch.equal(now[k]["exp_avg"], m) for k, m in moments.items())


def test_fit_checkpoints_every_epoch_but_the_last(tmp_path, monkeypatch):
    root = DataRoot(str(tmp_path))
    written: list[int] = []
    real = CheckpointWriter.submit
    monkeypatch.setattr(CheckpointWriter, "submit", lambda self, s: (written.append(s["epoch"]), real(self, s)))
    run = Run(CFG, 2, torch.device("cpu"))
    state = fit(run, _batches(), EpochSampler(3, 0), None, root=root, checkpoint_path="run/last.pt", resume=True)
    assert written == [1, 2] and state.epochs_run == 3
    assert load_checkpoint(root, "run/last.pt")["epoch"] == 2
    # A rerun resumes after epoch 2 and trains only the last one.
    again = fit(
        Run(CFG, 2, torch.device("cpu")),
        _batches(),
        EpochSampler(3, 0),
        None,
        root=root,
        checkpoint_path="run/last.pt",
        resume=True,
    )
    assert again.resumed_from == 2 and [h["epoch"] for h in again.history] == [1, 2, 3]


def test_a_failed_checkpoint_write_fails_the_fit_with_its_error(tmp_path, monkeypatch):
    root = DataRoot(str(tmp_path))

    def full_disk(self, path, data):
        raise OSError(f"No space left on device: {path}")

    monkeypatch.setattr(DataRoot, "write_bytes", full_disk)
    run = Run(CFG, 2, torch.device("cpu"))
    with pytest.raises(OSError, match=r"No space left on device: run/last\.pt"):
        fit(run, _batches(), EpochSampler(3, 0), None, root=root, checkpoint_path="run/last.pt", resume=False)

"""The torch.compile flag: off by default; when compiling fails (made to fail here: compiling for real takes
minutes on 2 CPU cores, so a real compile is not run in these tests) training goes on eagerly and says so."""

from __future__ import annotations

import pytest
import torch

from corpus.releases.build import build_release
from corpus.releases.config import ReleaseConfig
from corpus.store import DataRoot
from training.config import TrainConfig
from training.train import train_model

TINY = TrainConfig(image_size=32, epochs=1, batch_size=16, width=8, num_workers=0, compile=True)


@pytest.fixture(scope="module")
def own_root(tmp_path_factory, make_shape_records) -> DataRoot:
    """This module's own data root (the shared shapes_root's model list belongs to test_training)."""
    root = DataRoot(str(tmp_path_factory.mktemp("own")))
    build_release(root, "shapes", make_shape_records(6), ReleaseConfig())
    return root


def _failing_compile(model, *args, **kwargs):
    def compiled(x):
        raise RuntimeError("no C++ compiler for inductor")

    return compiled


@pytest.mark.parametrize("where", ["call", "construction"])
def test_a_failing_compile_falls_back_to_eager(own_root: DataRoot, monkeypatch, where):
    assert TrainConfig().compile is False
    if where == "call":
        monkeypatch.setattr(torch, "compile", _failing_compile)
    else:
        monkeypatch.setattr(torch, "compile", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("unsupported")))
    with pytest.warns(RuntimeWarning, match="torch.compile failed, training eagerly"):
        metrics = train_model(own_root, "shapes", "latest", TINY)
    assert metrics["compile"]["requested"] is True and metrics["compile"]["used"] is False
    assert "RuntimeError" in metrics["compile"]["error"] and metrics["epochs_run"] == 1

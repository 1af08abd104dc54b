"""Transfer learning on a tiny release: a ResNet-18 from locally made 'pretrained' weights, linear probe and
stem-frozen fine-tuning (frozen tensors and BN statistics untouched), metadata, pool scoring, lr schedules."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from corpus.releases.build import build_release
from corpus.releases.config import ReleaseConfig
from corpus.store import DataRoot
from training.backbones import ResNet
from training.config import TrainConfig
from training.predict import predict_pool
from training.registry import load_model
from training.train import redact_source, train_model
from training.transfer import make_scheduler

# Tiny on purpose: 32 px, 2 epochs (2 shared CPU cores); the checks are about what trains, not accuracy.
TINY = {"image_size": 32, "epochs": 2, "batch_size": 16, "num_workers": 0, "backbone": "resnet18"}


@pytest.fixture(scope="module")
def own_root(tmp_path_factory, make_shape_records) -> DataRoot:
    """This module's own data root (the shared shapes_root's model list belongs to test_training)."""
    root = DataRoot(str(tmp_path_factory.mktemp("own")))
    build_release(root, "shapes", make_shape_records(12), ReleaseConfig())
    return root


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> tuple[str, str, dict[str, torch.Tensor]]:
    """A 1000-class ResNet-18 state dict saved as torchvision publishes it; (path, sha256, state)."""
    torch.manual_seed(11)
    model = ResNet("resnet18", 1000)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("weights") / "resnet18-test.pth"
    torch.save(model.state_dict(), path)
    return str(path), hashlib.sha256(path.read_bytes()).hexdigest(), model.state_dict()


def test_linear_probe_trains_only_the_head_and_scores_the_pool(own_root: DataRoot, pretrained, make_shape_records):
    path, digest, ref = pretrained
    cfg = TrainConfig(**TINY, weights=path, weights_sha256=digest, transfer="linear-probe")
    metrics = train_model(own_root, "shapes", "latest", cfg)
    m = metrics["model"]
    assert m["arch"] == "resnet18" and m["backbone"] == "resnet18" and m["transfer"] == "linear-probe"
    assert m["weights"]["source"] == path and m["weights"]["sha256"] == digest and m["weights"]["head"] == "replaced"
    assert m["trainable_parameters"] == 512 * 4 + 4
    model, _ = load_model(own_root, metrics["model_version"])
    state = model.state_dict()
    for key in ("conv1.weight", "bn1.running_mean", "layer3.1.bn2.running_var", "layer4.1.conv2.weight"):
        assert torch.equal(state[key], ref[key]), key  # frozen: weights and BN statistics as loaded
    assert state["fc.weight"].shape == (4, 512)
    preds = predict_pool(own_root, metrics["model_version"], make_shape_records(1, seed=31), batch_size=4)
    assert preds.num_rows == 4
    assert np.array(preds.column("embedding").to_pylist()).shape == (4, 512)
    assert np.allclose(np.array(preds.column("probs").to_pylist()).sum(1), 1.0, atol=1e-5)


def test_freeze_stem_trains_everything_past_conv1(own_root: DataRoot, pretrained):
    path, digest, ref = pretrained
    cfg = TrainConfig(**TINY, weights=path, weights_sha256=digest[:8], transfer="freeze-stem", lr_schedule="one-cycle")
    metrics = train_model(own_root, "shapes", "latest", cfg)
    assert metrics["lr_schedule"] == "one-cycle" and metrics["model"]["transfer"] == "freeze-stem"
    state = load_model(own_root, metrics["model_version"])[0].state_dict()
    assert torch.equal(state["conv1.weight"], ref["conv1.weight"])
    assert torch.equal(state["bn1.running_mean"], ref["bn1.running_mean"])
    assert not torch.equal(state["layer1.0.conv1.weight"], ref["layer1.0.conv1.weight"])
    assert not torch.equal(state["layer1.0.bn1.running_mean"], ref["layer1.0.bn1.running_mean"])


def test_transfer_config_checks_and_redaction():
    with pytest.raises(ValueError, match="needs pretrained `weights`"):
        TrainConfig(backbone="resnet18", transfer="linear-probe")
    with pytest.raises(ValueError, match="backbone"):
        TrainConfig(backbone="vit-b16")
    assert redact_source("https://u:secret@h.example/w.pth?X-Amz-Signature=abc") == "https://u@h.example/w.pth"
    assert redact_source("/data/w.pth") == "/data/w.pth"


@pytest.mark.parametrize(("schedule", "per_step"), [("cosine", False), ("constant", False), ("one-cycle", True)])
def test_lr_schedules(schedule, per_step):
    cfg = TrainConfig(epochs=4, lr=0.1, lr_schedule=schedule)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched, stepped = make_scheduler(opt, cfg, steps_per_epoch=5)
    assert stepped is per_step
    lrs = []
    for _ in range(20 if per_step else 4):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    if schedule == "constant":
        assert lrs == [0.1] * 4
    elif schedule == "cosine":
        assert lrs[-1] == pytest.approx(0.0, abs=1e-12) and lrs[0] < 0.1
    else:
        assert max(lrs) == pytest.approx(0.1, rel=1e-2) and lrs[0] < 0.02 and lrs[-1] < 1e-3

"""Backbones and pretrained weights: torchvision's parameter names pinned, weights saved as torchvision (torch .pth)
and timm (safetensors) would and reloaded to identical logits, sha256 pins, prefixes, heads of another size."""

from __future__ import annotations

import hashlib

import pytest
import torch
from safetensors.torch import save_file

from corpus.store import DataRoot
from training.backbones import ResNet, create_model
from training.registry import build_model
from training.weights import WeightsError, fit_weights, load_weights


def _block_keys(prefix: str, convs: int, downsample: bool) -> list[str]:
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = []
    for i in range(1, convs + 1):
        keys += [f"{prefix}.conv{i}.weight"] + [f"{prefix}.bn{i}.{b}" for b in bn]
    if downsample:
        keys += [f"{prefix}.downsample.0.weight"] + [f"{prefix}.downsample.1.{b}" for b in bn]
    return keys


# torchvision.models.resnet18().state_dict().keys(), in order, written out (122 keys): the layout timm shares.
BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
RESNET18_KEYS = (
    ["conv1.weight"]
    + [f"bn1.{b}" for b in BN]
    + _block_keys("layer1.0", 2, False)
    + _block_keys("layer1.1", 2, False)
    + _block_keys("layer2.0", 2, True)
    + _block_keys("layer2.1", 2, False)
    + _block_keys("layer3.0", 2, True)
    + _block_keys("layer3.1", 2, False)
    + _block_keys("layer4.0", 2, True)
    + _block_keys("layer4.1", 2, False)
    + ["fc.weight", "fc.bias"]
)


def _seeded(arch: str, num_classes: int, seed: int = 7) -> ResNet:
    """A 'pretrained' model: fixed-seed init plus non-trivial BN statistics, in eval mode."""
    torch.manual_seed(seed)
    model = ResNet(arch, num_classes)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    return model.eval()


def test_resnet18_state_dict_names_are_torchvision_s():
    keys = list(ResNet("resnet18", 1000).state_dict())
    assert len(RESNET18_KEYS) == 122
    assert keys == RESNET18_KEYS
    assert "layer2.0.downsample.0.weight" in keys and "layer1.0.downsample.0.weight" not in keys
    shapes = {k: tuple(v.shape) for k, v in ResNet("resnet18", 1000).state_dict().items()}
    assert shapes["conv1.weight"] == (64, 3, 7, 7) and shapes["fc.weight"] == (1000, 512)
    assert shapes["layer4.1.conv2.weight"] == (512, 512, 3, 3)


def test_resnet34_and_50_layouts():
    r34 = ResNet("resnet34", 10).state_dict()
    assert "layer3.5.conv2.weight" in r34 and "layer3.6.conv1.weight" not in r34
    r50 = ResNet("resnet50", 1000)
    sd = r50.state_dict()
    # torchvision's resnet50: 320 keys, Bottleneck v1.5 (the stride sits in conv2), layer1.0 has a downsample.
    assert len(sd) == 320
    assert tuple(sd["layer1.0.downsample.0.weight"].shape) == (256, 64, 1, 1)
    assert r50.layer2[0].conv2.stride == (2, 2) and r50.layer2[0].conv1.stride == (1, 1)
    assert tuple(sd["fc.weight"].shape) == (1000, 2048)
    assert sum(p.numel() for p in r50.parameters()) == 25_557_032  # torchvision's resnet50 count
    assert sum(p.numel() for p in ResNet("resnet18", 1000).parameters()) == 11_689_512


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_saved_weights_reload_to_identical_logits(tmp_path, fmt):
    ref = _seeded("resnet18", 5)
    path = tmp_path / f"resnet18.{fmt}"
    if fmt == "pth":
        torch.save(ref.state_dict(), path)  # what torchvision publishes: a plain state dict
    else:
        save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))  # timm's model.safetensors
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    weights = load_weights(str(path), sha256=digest)
    assert weights.fmt == ("torch" if fmt == "pth" else "safetensors") and weights.sha256 == digest
    model = create_model("resnet18", 5)
    report = fit_weights(model, weights)
    assert report.head == "loaded" and report.loaded == 122
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model.eval()(x), ref(x))
        assert model.embed(x).shape == (2, 512)
    # A torchvision-style file-name pin (the first 8 hex digits) is accepted too.
    assert load_weights(str(path), sha256=digest[:8]).sha256 == digest


def test_sha256_mismatch_is_refused(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(_seeded("resnet18", 2).state_dict(), path)
    with pytest.raises(WeightsError, match=r"sha256 is [0-9a-f]{64}, expected 00000000"):
        load_weights(str(path), sha256="0" * 64)
    with pytest.raises(WeightsError, match="not found"):
        load_weights(str(tmp_path / "absent.pth"))


def test_prefixes_nesting_head_replacement_and_mismatch_report(tmp_path):
    ref = _seeded("resnet18", 1000)
    # A DDP checkpoint nested like timm's train.py output: {"state_dict": {"module.conv1.weight": ...}}.
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}, tmp_path / "c.pth")
    weights = load_weights(str(tmp_path / "c.pth"))
    assert set(weights.state) == set(RESNET18_KEYS)
    model = create_model("resnet18", 4)
    report = fit_weights(model, weights)
    assert report.head == "replaced" and report.skipped == ["fc.weight", "fc.bias"]
    assert torch.equal(model.layer4[1].conv2.weight, ref.layer4[1].conv2.weight)
    assert model.fc.weight.shape == (4, 512)
    # Headless weights (timm num_classes=0) load too.
    torch.save({k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")}, tmp_path / "h.pth")
    assert fit_weights(create_model("resnet18", 4), load_weights(str(tmp_path / "h.pth"))).head == "absent"
    # resnet18 weights into a resnet34: missing blocks named; into a resnet50: misshapen named.
    with pytest.raises(WeightsError, match=r"missing \d+: layer1\.2\.conv1\.weight"):
        fit_weights(create_model("resnet34", 4), weights)
    with pytest.raises(WeightsError, match=r"unexpected|misshapen"):
        fit_weights(create_model("resnet50", 4), weights)
    (tmp_path / "junk.bin").write_bytes(b"not weights at all")
    with pytest.raises(WeightsError, match="neither safetensors nor"):
        load_weights(str(tmp_path / "junk.bin"))


def test_weights_from_the_data_root_and_an_fsspec_url(tmp_path):
    root = DataRoot(str(tmp_path / "root"))
    ref = _seeded("resnet18", 3)
    buf = tmp_path / "w.pth"
    torch.save(ref.state_dict(), buf)
    root.write_bytes("weights/resnet18.pth", buf.read_bytes())
    assert load_weights("weights/resnet18.pth", root=root).sha256 == hashlib.sha256(buf.read_bytes()).hexdigest()
    assert set(load_weights(f"file://{buf}").state) == set(RESNET18_KEYS)


def test_registry_builds_either_architecture():
    assert isinstance(build_model({"model": {"arch": "resnet34", "num_classes": 3}}), ResNet)
    small = build_model({"model": {"arch": "SmallCNN", "num_classes": 3, "width": 8}})
    assert small.head.out_features == 3
    with pytest.raises(ValueError, match="unknown architecture 'vit'"):
        build_model({"model": {"arch": "vit", "num_classes": 3}})

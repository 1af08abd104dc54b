"""Training from the pool's SimCLR encoder (TrainConfig.init_from_encoder) and the logistic-regression head."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from corpus.releases.build import build_release
from corpus.releases.config import ReleaseConfig
from corpus.releases.versions import load_release
from corpus.store import DataRoot
from training.backbones import create_model
from training.config import SimCLRConfig, TrainConfig
from training.encoder_init import fit_logistic_head, load_encoder_weights
from training.encoders import WEIGHTS_FILE, encoder_path, load_encoder, pretrain_pool_encoder
from training.predict import compute_probs
from training.registry import load_model
from training.train import train_model
from training.weights import WeightsError, fit_weights

TINY = SimCLRConfig(epochs=1, image_size=32, batch_size=16, width=8, device="cpu", num_workers=0)
PROBE = TrainConfig(
    init_from_encoder="newest",
    transfer="linear-probe",
    head_fit="logistic",
    width=8,
    image_size=32,
    epochs=1,
    batch_size=8,
    num_workers=0,
    device="cpu",
)


@pytest.fixture(scope="module")
def encoder_root(tmp_path_factory, make_shape_records) -> DataRoot:
    """A data root with release v0001 of "shapes" (4 classes x 10) and a 1-epoch SimCLR encoder of its images."""
    root = DataRoot(str(tmp_path_factory.mktemp("enc")))
    records = make_shape_records(10)
    build_release(root, "shapes", records, ReleaseConfig())
    pretrain_pool_encoder(root, records, cfg=TINY)
    return root


def test_logistic_head_separates_planted_classes_and_never_predicts_an_absent_one():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 4
    targets = np.repeat([0, 2, 3], 20)  # class 1 of 4 has no example
    features = np.vstack([c + rng.normal(size=(20, 16)) for c in centres]).astype(np.float32)
    weight, bias = fit_logistic_head(features, targets, 4)
    predicted = (features @ weight.T + bias).argmax(1)
    assert weight.shape == (4, 16) and (predicted == targets).mean() == 1.0 and 1 not in predicted
    binary = np.isin(targets, [0, 2])
    w2, b2 = fit_logistic_head(features[binary], targets[binary], 4)
    assert ((features[binary] @ w2.T + b2).argmax(1) == targets[binary]).all()
    w1, b1 = fit_logistic_head(features[:5], np.full(5, 3), 4)
    assert ((features @ w1.T + b1).argmax(1) == 3).all()


def test_encoder_weights_load_unchanged_into_the_classifier(encoder_root: DataRoot):
    weights, version = load_encoder_weights(encoder_root, "newest", PROBE)
    encoder, _ = load_encoder(encoder_root, version)
    model = create_model("small-cnn", 4, width=8)
    report = fit_weights(model, weights)
    assert version == "simclr-0001" and report.head == "replaced"
    own = model.state_dict()
    for name, tensor in encoder.state_dict().items():
        if not name.startswith("head."):
            assert torch.equal(own[name], tensor), name
    assert weights.sha256 == hashlib.sha256(encoder_root.read_bytes(encoder_path(version, WEIGHTS_FILE))).hexdigest()
    with pytest.raises(WeightsError, match=r"width 8.*width 16"):
        load_encoder_weights(encoder_root, version, PROBE.model_copy(update={"width": 16}))
    with pytest.raises(FileNotFoundError):
        load_encoder_weights(encoder_root, "simclr-0099", PROBE)


def test_config_rules_for_the_encoder_start():
    with pytest.raises(ValueError, match="not both"):
        TrainConfig(init_from_encoder="newest", weights="w.pt")
    with pytest.raises(ValueError, match="needs transfer='linear-probe'"):
        TrainConfig(head_fit="logistic", init_from_encoder="newest")
    assert TrainConfig(transfer="linear-probe", init_from_encoder="newest").transfer == "linear-probe"


def test_no_encoder_yet_is_one_clear_error(tmp_path, make_shape_records):
    root = DataRoot(str(tmp_path))
    build_release(root, "shapes", make_shape_records(2), ReleaseConfig())
    with pytest.raises(ValueError, match="no encoder was pretrained"):
        load_encoder_weights(root, "newest", PROBE)


def test_logistic_probe_records_the_val_figures_of_the_refitted_model(encoder_root: DataRoot):
    # The head is refitted after the SGD epoch: metrics.json's best val and the kept epoch's val figures must be
    # those of the published model, scored here on the val split from scratch.
    metrics = train_model(encoder_root, "shapes", "latest", PROBE)
    model, meta = load_model(encoder_root, metrics["model_version"])
    val = load_release(encoder_root, "shapes", "latest").val
    _, probs, _ = compute_probs(model, meta, val, device="cpu")
    targets = np.array([meta["labels"].index(label) for label in val.column("label").to_pylist()])
    accuracy = float((probs.argmax(1) == targets).mean())
    loss = float(-np.log(probs[np.arange(len(targets)), targets]).mean())
    kept = next(h for h in metrics["history"] if h["epoch"] == metrics["best_epoch"])
    assert metrics["val_accuracy"] == pytest.approx(accuracy) and kept["val_accuracy"] == pytest.approx(accuracy)
    assert kept["val_loss"] == pytest.approx(loss, rel=1e-4) and kept["head_fit"] == "logistic"
    assert kept["sgd_val_loss"] != pytest.approx(loss, rel=1e-4)  # the SGD epoch's figure, kept beside it

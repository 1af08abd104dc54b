"""The train flow on a real Prefect server with TrainConfig.init_from_encoder: the classifier starts from the
pool's SimCLR encoder (frozen, logistic-regression head) and its metadata names the encoder as the weights' source."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from corpus.releases.build import build_release
from corpus.releases.config import ReleaseConfig
from corpus.releases.versions import load_release
from corpus.store import DataRoot
from pipelines.config import TrainParams
from pipelines.train import train_flow
from tests.training.conftest import _make_shape_records
from tests.training.test_encoder_init import PROBE, TINY
from training.encoders import load_encoder, pretrain_pool_encoder
from training.predict import compute_probs
from training.registry import load_model

pytestmark = [pytest.mark.prefect]


def test_train_flow_starts_from_the_encoder_with_a_logistic_probe(prefect_api, tmp_path):
    root = DataRoot(str(tmp_path / "data"))
    records = _make_shape_records(10)
    build_release(root, "shapes", records, ReleaseConfig())
    pretrain_pool_encoder(root, records, cfg=TINY)
    result = train_flow(TrainParams(dataset="shapes", train=PROBE, data_root=root.url))
    model, meta = load_model(root, result["model_version"])
    weights = meta["model"]["weights"]
    assert weights["encoder_version"] == "simclr-0001" and weights["source"] == "encoders/simclr-0001/encoder.pt"
    pinned = hashlib.sha256(root.read_bytes("encoders/simclr-0001/encoder.pt")).hexdigest()
    assert weights["sha256"] == pinned and meta["config"]["head_fit"] == "logistic"
    encoder, _ = load_encoder(root, "simclr-0001")
    assert torch.equal(model.state_dict()["features.0.0.weight"], encoder.state_dict()["features.0.0.weight"])
    assert meta["model"]["trainable_parameters"] == 4 * 32 + 4  # the head alone (width 8: 32 features)
    # The logistic probe fits its train split (28 images, 32 standardised features): one SGD epoch would not.
    train = load_release(root, "shapes", "latest").train
    ids, probs, _ = compute_probs(model, meta, train, device="cpu")
    truth = dict(zip(train.column("record_id").to_pylist(), train.column("label").to_pylist(), strict=True))
    predicted = [meta["labels"][k] for k in probs.argmax(1)]
    assert np.mean([p == truth[i] for p, i in zip(predicted, ids, strict=True)]) >= 0.9

"""Training the detector on a detect release: a published model with mAP in its metrics and report, then pool
predictions with scored boxes, an image-level confidence and embeddings; wrong releases and recipes refused."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from corpus.releases.build import build_release
from corpus.releases.config import ReleaseConfig
from corpus.schema import PREDICTION_SCHEMA
from corpus.store import DataRoot
from tests.corpus.test_releases import make_records
from tests.training.box_shapes import make_box_records
from training.backbones import ResNet
from training.config import TrainConfig
from training.detector import CenterNet
from training.detector_predict import PREDICTION_MIN_SCORE, image_confidence, predict_box_pool
from training.detector_train import train_detector
from training.loop import to_bytes
from training.registry import list_models, load_model, read_predictions

CFG = TrainConfig(epochs=12, batch_size=8, width=16, patience=12)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = DataRoot(str(tmp_path_factory.mktemp("detect")))
    manifest = build_release(root, "shapes", make_box_records(40, seed=3), ReleaseConfig(task="detect"))
    assert manifest["task"] == "detect" and manifest["rows"]["val"] > 0 and manifest["rows"]["test"] > 0
    return root, train_detector(root, "shapes", "latest", CFG)


def test_a_detector_trained_on_a_detect_release_is_published_with_its_map(trained):
    root, metrics = trained
    assert list_models(root) == [metrics["model_version"]] == ["shapes-v0001-m001"]
    assert metrics["task"] == "detect" and metrics["labels"] == ["disc", "square"]
    assert metrics["model"]["arch"] == "CenterNet" and metrics["model"]["backbone"] == "small-cnn"
    # Learned, not chance: a tiny set of two easy shapes, 12 epochs on a CPU.
    assert metrics["test_map_50"] >= 0.5 and 0 < metrics["test_map_50_95"] <= metrics["test_map_50"]
    assert set(metrics["per_label_ap"]) == {"disc", "square"}
    assert metrics["val_map_50_95"] is not None and 1 <= metrics["best_epoch"] <= metrics["epochs_run"]
    assert metrics["augmentation"]["name"] == "boxes-basic"
    report = root.read_bytes(f"models/{metrics['model_version']}/report.md").decode()
    assert "| test mAP@0.5 |" in report and "| disc |" in report and "CenterNet on small-cnn" in report
    model, meta = load_model(root, metrics["model_version"])
    assert isinstance(model, CenterNet) and meta["image_size"] == CFG.image_size


def test_pool_predictions_carry_scored_boxes_a_confidence_and_embeddings(trained):
    root, metrics = trained
    pool = make_box_records(6, seed=9)
    table = predict_box_pool(root, metrics["model_version"], pool)
    assert table.schema.equals(PREDICTION_SCHEMA, check_metadata=False) and table.num_rows == 6
    assert read_predictions(root, metrics["model_version"]).num_rows == 6
    for row in table.to_pylist():
        scores = [b["score"] for b in row["boxes"]]
        assert scores == sorted(scores, reverse=True) and all(PREDICTION_MIN_SCORE <= s <= 1 for s in scores)
        assert row["confidence"] == pytest.approx(image_confidence(np.array(scores)), abs=1e-6)
        assert row["predicted_label"] == (row["boxes"][0]["label"] if row["boxes"] else None)
        assert row["probs"] is None and len(row["embedding"]) == 4 * CFG.width
        for box in row["boxes"]:
            assert box["x"] >= 0 and box["x"] + box["w"] <= 64 + 1e-6 and box["x_norm"] == box["x"] / 64
    # The best box of each image lands on one of its true objects.
    hits = 0
    for predicted, truth in zip(table.column("boxes").to_pylist(), pool.column("boxes").to_pylist(), strict=True):
        best = predicted[0]
        centre = (best["x"] + best["w"] / 2, best["y"] + best["h"] / 2)
        hits += any(t["x"] <= centre[0] <= t["x"] + t["w"] and t["y"] <= centre[1] <= t["y"] + t["h"] for t in truth)
    assert hits >= 5


def test_a_classify_release_or_a_recipe_that_leaves_boxes_behind_is_refused(tmp_path):
    root = DataRoot(str(tmp_path))
    build_release(root, "animals", make_records(20), ReleaseConfig())
    with pytest.raises(ValueError, match="release animals/v0001 is a classify release, not detect"):
        train_detector(root, "animals", "latest", CFG)
    build_release(root, "shapes", make_box_records(12), ReleaseConfig(task="detect"))
    with pytest.raises(ValueError, match="recipe 'train-basic' does not move boxes"):
        train_detector(root, "shapes", "latest", CFG.model_copy(update={"recipe": "train-basic"}))
    with pytest.raises(ValueError, match="devices=2: the detector trains on one device"):
        train_detector(root, "shapes", "latest", CFG.model_copy(update={"devices": 2}))
    assert list_models(root) == []


def test_an_interrupted_run_resumes_from_its_last_epoch_to_the_same_model(tmp_path):
    root = DataRoot(str(tmp_path))
    build_release(root, "shapes", make_box_records(12, seed=4), ReleaseConfig(task="detect"))
    cfg = CFG.model_copy(update={"epochs": 3})

    def stop_after_epoch_2(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt("planted: the node was preempted")

    with pytest.raises(KeyboardInterrupt, match="planted"):
        train_detector(root, "shapes", "latest", cfg, on_epoch=stop_after_epoch_2)
    assert list_models(root) == [] and len(root.list_dirs("models/.runs")) == 1
    resumed = train_detector(root, "shapes", "latest", cfg)
    assert resumed["resumed_from_epoch"] == 2 and [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    assert not root.exists("models/.runs")  # the checkpoint goes once the model is published
    straight = train_detector(root, "shapes", "latest", cfg.model_copy(update={"resume": False}))
    assert straight["resumed_from_epoch"] is None
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in straight["history"]]
    mine, _ = load_model(root, resumed["model_version"])
    theirs, _ = load_model(root, straight["model_version"])
    assert all(torch.equal(a, b) for a, b in zip(mine.state_dict().values(), theirs.state_dict().values(), strict=True))


def test_a_resnet_trunk_starts_from_pretrained_weights_and_linear_probe_keeps_them(tmp_path):
    root = DataRoot(str(tmp_path))
    build_release(root, "shapes", make_box_records(10, seed=6), ReleaseConfig(task="detect"))
    pretrained = ResNet("resnet18", 10).state_dict()
    root.write_bytes("weights/resnet18.pt", to_bytes(pretrained))
    cfg = CFG.model_copy(
        update={"backbone": "resnet18", "weights": "weights/resnet18.pt", "transfer": "linear-probe", "epochs": 1}
    )
    metrics = train_detector(root, "shapes", "latest", cfg)
    described = metrics["model"]
    assert described["backbone"] == "resnet18" and described["transfer"] == "linear-probe"
    assert described["weights"]["source"] == "weights/resnet18.pt" and described["weights"]["head"] == "replaced"
    assert described["weights"]["sha256"] == hashlib.sha256(root.read_bytes("weights/resnet18.pt")).hexdigest()
    assert described["trainable_parameters"] < described["parameters"]
    model, _ = load_model(root, metrics["model_version"])
    trunk = {k: v for k, v in pretrained.items() if not k.startswith("fc.")}
    assert all(torch.equal(model.backbone.state_dict()[k], v) for k, v in trunk.items())  # frozen: BN stats too

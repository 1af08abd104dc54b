"""The CenterNet detector: exact decoding of hand-made maps, targets that decode back to their boxes, the focal
loss by hand, pretrained trunks and transfer modes, and a tiny generated set overfitted to mAP@0.5 >= 0.9."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from corpus.boxes import box_set_from_rows
from tests.training.box_shapes import make_box_records
from training.backbones import ResNet
from training.box_evaluation import compute_map
from training.data import decode_image
from training.detector import (
    STRIDE,
    CenterNet,
    decode_detections,
    detection_loss,
    draw_gaussian,
    encode_targets,
    focal_loss,
    gaussian_radius,
    scale_detections,
)
from training.detector_predict import image_confidence, to_box_sets
from training.transfer import freeze
from training.weights import LoadedWeights, fit_weights


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_decoding_a_hand_made_heatmap_gives_its_peaks_exactly():
    # 2 classes on an 8x8 output: class 0 peaks at (x=2, y=3) with 0.9 beside a 0.6 neighbour (not a peak);
    # class 1 peaks at (x=6, y=1) with 0.7. Everything else sits at 0.01.
    logits = torch.full((1, 2, 8, 8), _logit(0.01))
    logits[0, 0, 3, 2] = _logit(0.9)
    logits[0, 0, 3, 3] = _logit(0.6)
    logits[0, 1, 1, 6] = _logit(0.7)
    size = torch.zeros(1, 2, 8, 8)
    offset = torch.zeros(1, 2, 8, 8)
    size[0, :, 3, 2] = torch.tensor([4.0, 2.0])
    offset[0, :, 3, 2] = torch.tensor([0.5, 0.25])
    size[0, :, 1, 6] = torch.tensor([2.0, 6.0])
    found = decode_detections(logits, size, offset, top_k=3)[0]
    np.testing.assert_allclose(found.scores[:2], [0.9, 0.7], rtol=1e-6)
    assert found.classes[:2].tolist() == [0, 1]
    # centre (2.5, 3.25) cells, 4 x 2 cells, times stride 4
    np.testing.assert_allclose(found.xyxy[0], np.array([0.5, 2.25, 4.5, 4.25]) * STRIDE)
    np.testing.assert_allclose(found.xyxy[1], np.array([5.0, -2.0, 7.0, 4.0]) * STRIDE)
    assert found.scores[2] == pytest.approx(0.01, rel=1e-5)  # the neighbour at 0.6 is suppressed, not third
    assert np.all((found.scores >= 0) & (found.scores <= 1))
    scaled = scale_detections(found, width=64, height=16, input_size=32)
    np.testing.assert_allclose(scaled.xyxy[0], [4.0, 4.5, 36.0, 8.5])  # x scaled by 2, y by 0.5
    np.testing.assert_allclose(scaled.xyxy[1], [40.0, 0.0, 56.0, 8.0])  # clipped at the top


def test_targets_put_a_one_at_each_centre_and_decode_back_to_the_boxes():
    boxes = np.array([[8.0, 12.0, 24.0, 20.0], [40.0, 40.0, 61.0, 58.0]])
    targets = encode_targets(boxes, [1, 0], num_classes=2, input_size=64)
    assert targets["heatmap"].shape == (2, 16, 16)
    assert targets["heatmap"][1, 4, 4] == 1.0 and targets["heatmap"][0, 12, 12] == 1.0
    assert targets["heatmap"].max() == 1.0 and (targets["heatmap"] == 1.0).sum() == 2
    assert targets["mask"][:3].tolist() == [1.0, 1.0, 0.0]
    np.testing.assert_allclose(targets["size"][:2], [[4.0, 2.0], [5.25, 4.5]])
    np.testing.assert_allclose(targets["offset"][:2], [[0.0, 0.0], [0.625, 0.25]])
    # Maps holding exactly the targets (logits far from 0 where the heatmap is 1) decode to the boxes.
    logits = torch.from_numpy(np.where(targets["heatmap"] == 1.0, 8.0, -8.0))[None].float()
    size = torch.zeros(1, 2, 16, 16)
    offset = torch.zeros(1, 2, 16, 16)
    for slot in range(2):
        y, x = divmod(int(targets["index"][slot]), 16)
        size[0, :, y, x] = torch.from_numpy(targets["size"][slot])
        offset[0, :, y, x] = torch.from_numpy(targets["offset"][slot])
    found = decode_detections(logits, size, offset, top_k=2)[0]
    order = np.argsort(found.xyxy[:, 0])
    np.testing.assert_allclose(found.xyxy[order], boxes, atol=1e-5)
    assert found.classes[order].tolist() == [1, 0]


def test_the_gaussian_radius_and_blob_follow_centernets_code():
    # CornerNet's gaussian_radius for a 10 x 10 box at min overlap 0.7: the third case, (b3 + sqrt) / 2.
    a3, b3, c3 = 4 * 0.7, -2 * 0.7 * 20, (0.7 - 1) * 100
    assert gaussian_radius(10, 10) == pytest.approx((b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2)
    heat = np.zeros((5, 5), np.float32)
    draw_gaussian(heat, (0, 4), 2)  # a corner: the blob is cut at the edges, not wrapped
    sigma = 5 / 6
    assert heat[4, 0] == 1.0 and heat[4, 1] == pytest.approx(math.exp(-1 / (2 * sigma**2)), rel=1e-6)
    assert heat[0:2].sum() == 0 and heat[:, 3:].sum() == 0


def test_the_focal_loss_equals_the_papers_formula_on_a_tiny_map():
    target = torch.tensor([[[[1.0, 0.5], [0.0, 0.0]]]])
    p = torch.tensor([[[[0.8, 0.3], [0.1, 0.6]]]])
    expected = -(
        math.log(0.8) * 0.2**2  # the centre
        + math.log(0.7) * 0.3**2 * 0.5**4  # near the centre: weighted down by (1 - y)^4
        + math.log(0.9) * 0.1**2
        + math.log(0.4) * 0.6**2
    )  # / 1 centre
    assert focal_loss(torch.logit(p), target).item() == pytest.approx(expected, rel=1e-5)


def test_a_resnet_trunk_takes_classifier_weights_and_the_transfer_modes_freeze_it():
    classifier = ResNet("resnet18", 10)
    weights = LoadedWeights(classifier.state_dict(), "resnet18.pt", "0" * 64, "torch")
    model = CenterNet("resnet18", 3)
    report = fit_weights(model.backbone, weights)
    assert report.head == "replaced" and report.loaded == len(classifier.state_dict()) - 2
    torch.testing.assert_close(model.backbone.layer3[0].conv1.weight, classifier.layer3[0].conv1.weight)
    heatmap, size, offset = model(torch.zeros(2, 3, 64, 64))
    assert heatmap.shape == (2, 3, 16, 16) and size.shape == offset.shape == (2, 2, 16, 16)
    assert model.embed(torch.zeros(1, 3, 64, 64)).shape == (1, model.embedding_dim) == (1, 512)
    frozen = freeze(model, "linear-probe")
    assert frozen == [model.backbone] and all(p.requires_grad for p in model.head.parameters())
    stem = CenterNet("small-cnn", 2, width=8)
    assert freeze(stem, "freeze-stem") == [stem.backbone.features[0]]


def _tensors(records, labels):
    images, targets, truth = [], [], []
    for row in records.select(["record_id", "image", "boxes"]).to_pylist():
        image = decode_image(row["image"], row["record_id"]).astype(np.float32) / 255.0
        images.append(torch.from_numpy(image.transpose(2, 0, 1)))
        boxes = box_set_from_rows(row["boxes"])
        targets.append(encode_targets(boxes.xyxy, [labels.index(v) for v in boxes.labels], len(labels), 64))
        truth.append(boxes)
    batch = {k: torch.from_numpy(np.stack([t[k] for t in targets])) for k in targets[0]}
    return torch.stack(images), batch, truth


def test_the_detector_overfits_a_tiny_generated_set_in_seconds():
    labels = ["disc", "square"]
    x, targets, truth = _tensors(make_box_records(8, seed=1), labels)
    torch.manual_seed(0)
    model = CenterNet("small-cnn", len(labels), width=16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    started = time.perf_counter()
    for _ in range(60):
        loss, _ = detection_loss(model(x), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        found = decode_detections(*model(x))
    scores = compute_map(to_box_sets(found, labels), truth)
    print(f"overfit: {time.perf_counter() - started:.1f} s, mAP@0.5 {scores['map_50']:.3f}")
    assert scores["map_50"] >= 0.9
    assert set(scores["per_label"]) == set(labels)


def test_an_image_is_as_confident_as_its_most_doubtful_peak():
    assert image_confidence(np.array([0.95, 0.5, 0.02])) == pytest.approx(0.0)
    assert image_confidence(np.array([0.9, 0.2])) == pytest.approx(0.6)
    assert image_confidence(np.array([])) == 1.0

"""Multi-label training: per-label metrics by hand, a BCE model that learns colour sets, sigmoid pool predictions."""

from __future__ import annotations

import cv2
import numpy as np
import pyarrow as pa
import pytest

from corpus.releases.build import build_release
from corpus.releases.config import ReleaseConfig
from corpus.releases.multilabel import join_label_set
from corpus.schema import conform, make_record_id
from corpus.store import DataRoot
from training.config import TrainConfig
from training.multilabel_evaluation import compute_micro_f1, compute_multilabel_metrics
from training.multilabel_model import describe_label_sets, multi_hot
from training.predict import predict_pool
from training.registry import model_path
from training.train import train_model

COLOURS = {"red": (230, 30, 30), "green": (30, 220, 30), "blue": (30, 50, 240)}


def make_colour_records(n: int, seed: int, side: int = 32, colours: tuple[str, ...] = tuple(COLOURS)) -> pa.Table:
    """Images holding a filled square (in a random place) of the colour of every label in their set; each of
    `colours` is in a set with chance 1/2 (the others never are)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        chosen = sorted(c for c in colours if rng.random() < 0.5)
        img = rng.integers(0, 40, size=(side, side, 3), dtype=np.uint8)
        for name in chosen:
            x, y = (int(v) for v in rng.integers(0, side - 10, size=2))
            cv2.rectangle(img, (x, y), (x + 9, y + 9), COLOURS[name], -1)
        ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        assert ok
        data = buf.tobytes()
        rows.append(
            {
                "record_id": make_record_id(data),
                "kind": "image",
                "image": data,
                "width": side,
                "height": side,
                "mime": "image/png",
                "labels": chosen,
                "label": join_label_set(chosen),
                "label_source": "consensus",
                "label_confidence": 1.0,
                "annotators": ["a", "b"],
            }
        )
    return conform(pa.Table.from_pylist(rows))


def test_per_label_metrics_match_a_hand_computed_case() -> None:
    probs = np.array([[0.9, 0.2], [0.6, 0.7], [0.1, 0.4], [0.3, 0.8]])
    targets = np.array([[1, 0], [0, 1], [0, 0], [1, 1]])
    m = compute_multilabel_metrics(probs, targets, ["a", "b"])
    a, b = m["per_label_metrics"]["a"], m["per_label_metrics"]["b"]
    # a: predicted {0, 1}, true {0, 3}: tp 1, precision 1/2, recall 1/2
    # AP: by score 0.9 (hit), 0.6, 0.3 (hit), 0.1 -> (1 + 2/3) / 2
    assert (a["precision"], a["recall"], a["f1"], a["support"]) == (0.5, 0.5, 0.5, 2)
    assert a["average_precision"] == pytest.approx((1 + 2 / 3) / 2)
    # b: predicted {1, 3}, true {1, 3}: perfect
    assert (b["precision"], b["recall"], b["f1"], b["average_precision"]) == (1.0, 1.0, 1.0, 1.0)
    assert m["test_micro_f1"] == pytest.approx(2 * 3 / (4 + 4))
    assert m["test_macro_f1"] == pytest.approx(0.75)
    assert m["test_map"] == pytest.approx(((1 + 2 / 3) / 2 + 1) / 2)
    assert m["test_exact_match"] == 0.5
    assert compute_micro_f1(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) is None


def test_multi_hot_and_predicted_sets() -> None:
    hot, unknown = multi_hot([["b"], [], ["a", "z"]], ["a", "b"])
    assert hot.tolist() == [[0, 1], [0, 0], [1, 0]] and unknown == 1
    sets, confidence = describe_label_sets(np.array([[0.9, 0.5], [0.2, 0.1]]), ["a", "b"])
    assert sets == ["a;b", ""]
    assert confidence.tolist() == pytest.approx([0.7, 0.85])


def test_a_bce_model_learns_colour_sets_and_scores_the_pool(tmp_path) -> None:
    root = DataRoot(str(tmp_path))
    build_release(root, "colours", make_colour_records(160, seed=1), ReleaseConfig(task="multilabel"))
    cfg = TrainConfig(image_size=32, epochs=10, batch_size=16, width=16, patience=10, num_workers=0, lr=3e-3)
    metrics = train_model(root, "colours", "latest", cfg)
    assert metrics["task"] == "multilabel" and metrics["labels"] == ["blue", "green", "red"]
    assert set(metrics["per_label_metrics"]) == {"blue", "green", "red"}
    assert metrics["test_map"] > 0.8, metrics["per_label_metrics"]
    assert metrics["test_micro_f1"] > 0.7
    report = root.read_bytes(model_path(metrics["model_version"], "report.md")).decode()
    assert "Per label (test" in report and "test mAP" in report
    pool = make_colour_records(12, seed=9)
    predictions = predict_pool(root, metrics["model_version"], pool)
    probs = np.asarray(predictions.column("probs").to_pylist())
    assert probs.shape == (12, 3) and not np.allclose(probs.sum(1), 1.0)  # sigmoids, not a softmax
    truth = dict(zip(pool.column("record_id").to_pylist(), pool.column("label").to_pylist(), strict=True))
    got = dict(
        zip(predictions.column("record_id").to_pylist(), predictions.column("predicted_label").to_pylist(), strict=True)
    )
    assert sum(got[r] == truth[r] for r in truth) >= 6
    assert len(predictions.column("embedding")[0].as_py()) == 64

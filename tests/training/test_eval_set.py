"""Every model is scored on its release's fixed eval set, beside the newest model of each earlier version."""

from __future__ import annotations

import pyarrow as pa

from corpus.releases.build import build_release
from corpus.releases.config import ReleaseConfig
from corpus.store import DataRoot
from training.comparison import compare_versions, score_predictions
from training.config import TrainConfig
from training.train import train_model

QUICK = TrainConfig(image_size=32, epochs=3, batch_size=16, width=8, num_workers=0, device="cpu")


def test_score_predictions_counts_unknown_labels_as_wrong():
    scores = score_predictions(["a", "b", "c", "a"], ["a", "a", "a", "a"], ["a", "b"])
    assert scores["accuracy"] == 0.5 and scores["unknown_label"] == 1 and scores["n"] == 4
    assert scores["confusion_matrix"] == [[2, 0], [1, 0]]
    assert scores["per_class_metrics"]["b"]["recall"] == 0.0


def test_models_of_two_versions_are_compared_on_the_same_items(tmp_path, make_shape_records):
    root = DataRoot(str(tmp_path))
    cfg = ReleaseConfig(eval_set_size=10)
    first = make_shape_records(20, seed=1)
    build_release(root, "shapes", first, cfg)
    m1 = train_model(root, "shapes", "v0001", QUICK)
    e1 = m1["eval_set"]
    assert e1["frozen"] and e1["n"] == e1["size"] >= 10
    assert sum(m["support"] for m in e1["per_class_metrics"].values()) == e1["n"]
    assert [r["release"] for r in m1["eval_by_version"]] == ["v0001"] and m1["eval_by_version"][0]["current"]

    second = pa.concat_tables([first, make_shape_records(10, seed=2)])
    manifest = build_release(
        root, "shapes", second, cfg, eval_scorer=lambda rows: compare_versions(root, "shapes", rows)
    )
    assert manifest["eval_set"]["id"] == e1["id"]
    # The release's card scores v0001's model on the same items its own report did.
    assert [(r["model_version"], r["accuracy"]) for r in manifest["eval_scores"]] == [
        (m1["model_version"], e1["accuracy"])
    ]
    m2 = train_model(root, "shapes", "v0002", QUICK)
    rows = m2["eval_by_version"]
    assert [r["release"] for r in rows] == ["v0001", "v0002"] and rows[1]["current"]
    assert rows[0]["accuracy"] == e1["accuracy"] and rows[0]["n"] == rows[1]["n"] == e1["n"]
    report = root.read_bytes(f"models/{m2['model_version']}/report.md").decode()
    assert "## Accuracy per version (same evaluation set)" in report
    assert f"| v0001 | {m1['model_version']} | {e1['accuracy']:.3f}" in report
    assert f"**{m2['model_version']}** (this model)" in report
    for heading in ("## Fixed evaluation set", "## Confusion on the eval set", "## Model", "transfer mode"):
        assert heading in report

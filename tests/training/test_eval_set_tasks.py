"""Multi-label and detection models on the fixed eval set: each version's newest model scored on the same items,
a label an earlier model lacks counted as missed, side by side in metrics.json, the report and the card."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from corpus.releases.build import build_release
from corpus.releases.config import ReleaseConfig
from corpus.releases.evalset import count_answers, select_eval_rows
from corpus.releases.versions import load_release
from corpus.store import DataRoot
from tests.training.box_shapes import make_box_records
from tests.training.test_multilabel_training import make_colour_records
from training.comparison import compare_versions, score_model_on
from training.config import TrainConfig
from training.detector_train import train_detector
from training.multilabel_evaluation import score_label_sets
from training.registry import load_model
from training.train import train_model

# One epoch on tiny images: these tests check what is compared and how, not how well a model learns.
QUICK = TrainConfig(image_size=32, epochs=1, batch_size=16, width=8, num_workers=0, device="cpu")
# The detector needs a few epochs at the images' own 64 px to find squares at all (mAP@0.5 0.6 measured, 2 s;
# 0 after one epoch at 32 px), so that a disc it cannot know lowers a figure that is not already 0.
DETECT = TrainConfig(image_size=64, epochs=4, batch_size=8, width=8, patience=4, num_workers=0, device="cpu")
# Below what the first release's test split holds, so the second release tops the set up with items showing
# the label the first never had; reached then, so the set is frozen.
EVAL_SIZE = 14


def test_a_label_the_model_lacks_is_missed_on_every_item_that_has_it():
    truth = [["a"], ["a", "z"], [], ["z"]]
    probs = np.array([[0.9], [0.8], [0.1], [0.7]])
    s = score_label_sets(truth, probs, ["a"], threshold=0.5)
    assert s["lacking_labels"] == ["z"] and s["unknown_label"] == 2 and s["n"] == 4
    z = s["per_label_metrics"]["z"]
    assert (z["recall"], z["f1"], z["average_precision"], z["support"]) == (0.0, 0.0, 0.0, 2)
    a = s["per_label_metrics"]["a"]  # predicted on items 0, 1, 3; true on 0, 1
    assert (a["precision"], a["recall"]) == (pytest.approx(2 / 3), 1.0) and a["average_precision"] == 1.0
    assert s["exact_match"] == 0.5  # items 0 and 2; the two holding "z" never are: it is never predicted
    assert s["micro_f1"] == pytest.approx(2 * 2 / (3 + 4))
    assert s["macro_f1"] == pytest.approx((0.8 + 0.0) / 2) and s["map"] == pytest.approx(0.5)


def test_class_counts_count_labels_over_label_sets_and_boxes_per_label():
    sets = pa.table({"record_id": ["1", "2", "3"], "label": ["a;b", "b", ""], "labels": [["a", "b"], ["b"], []]})
    assert count_answers(sets, [0, 1, 2]) == ({"a": 1, "b": 2}, "labels", 1)
    boxes = make_box_records(4, seed=1)
    expected: dict[str, int] = {}
    for row in boxes.column("boxes").to_pylist():
        for box in row:
            expected[box["label"]] = expected.get(box["label"], 0) + 1
    assert count_answers(boxes, [0, 1, 2, 3]) == (dict(sorted(expected.items())), "boxes", 0)
    assert count_answers(sets.drop_columns(["labels"]), [0, 1]) == ({"a;b": 1, "b": 1}, "items", 0)


def _two_versions(
    tmp_path, first: pa.Table, added: pa.Table, task: str, train, train_cfg: TrainConfig
) -> tuple[DataRoot, dict, dict, dict]:
    """Release `first`, train on it, release first + `added` (its card scoring the first model), train again:
    (root, first model's metrics, the second release's manifest, the second model's metrics)."""
    root = DataRoot(str(tmp_path))
    cfg = ReleaseConfig(task=task, eval_set_size=EVAL_SIZE)
    build_release(root, "ds", first, cfg)
    m1 = train(root, "ds", "v0001", train_cfg)
    scorer = lambda rows: compare_versions(root, "ds", rows)  # noqa: E731 (as pipelines.release passes it)
    manifest = build_release(root, "ds", pa.concat_tables([first, added]), cfg, eval_scorer=scorer)
    m2 = train(root, "ds", "v0002", train_cfg)
    return root, m1, manifest, m2


def _check_side_by_side(root: DataRoot, m1: dict, manifest: dict, m2: dict, lacking: str) -> dict:
    """What both task types share: the same eval ids and item count for both versions, the earlier model's row
    equal to scoring it afresh on those items, the lacking label counted against it; its fresh scores."""
    eval_set = manifest["eval_set"]
    assert m2["eval_set"]["id"] == eval_set["id"] and eval_set["frozen"] and eval_set["since"] == "v0001"
    assert lacking in eval_set["class_counts"] and lacking not in m1["labels"] and lacking in m2["labels"]
    rows = m2["eval_by_version"]
    assert [r["release"] for r in rows] == ["v0001", "v0002"] and rows[1]["current"] and not rows[0].get("current")
    assert rows[0]["model_version"] == m1["model_version"] and "error" not in rows[0]
    assert rows[0]["n"] == rows[1]["n"] == m2["eval_set"]["n"] == eval_set["size"]
    assert rows[0]["unknown_label"] == eval_set["class_counts"][lacking] > 0 and rows[1]["unknown_label"] == 0
    model, meta = load_model(root, m1["model_version"])
    again = score_model_on(model, meta, select_eval_rows(load_release(root, "ds", "v0002").test, eval_set), "cpu")
    assert again["lacking_labels"] == [lacking]
    # The release card scored the same model on the same items as the second model's comparison did.
    assert manifest["eval_scores"] == [rows[0]]
    return again


def test_two_multilabel_versions_are_compared_on_the_same_eval_items(tmp_path):
    first = make_colour_records(40, seed=1, colours=("green", "red"))
    added = make_colour_records(60, seed=2)
    root, m1, manifest, m2 = _two_versions(tmp_path, first, added, "multilabel", train_model, QUICK)
    assert manifest["eval_set"]["counted"] == "labels"
    again = _check_side_by_side(root, m1, manifest, m2, "blue")
    earlier = m2["eval_by_version"][0]
    for key in ("exact_match", "micro_f1", "macro_f1", "map"):
        assert earlier[key] == again[key]
    per_label = again["per_label_metrics"]
    assert (per_label["blue"]["recall"], per_label["blue"]["average_precision"]) == (0.0, 0.0)
    # blue's AP 0 is in the mean: the earlier model is not judged on its own two labels only.
    assert earlier["map"] == pytest.approx(
        np.mean([per_label[k]["average_precision"] for k in ("blue", "green", "red")])
    )
    assert set(m2["eval_set"]["per_label_metrics"]) == {"blue", "green", "red"}
    report = root.read_bytes(f"models/{m2['model_version']}/report.md").decode()
    assert "## Label-set scores per version (same evaluation set)" in report
    assert "| release | model | exact-set accuracy | micro F1 | macro F1 | mAP | items |" in report
    assert f"| v0001 | {m1['model_version']} | {earlier['exact_match']:.3f} | {earlier['micro_f1']:.3f} |" in report
    assert f"**{m2['model_version']}** (this model)" in report and "## Per label (eval set" in report
    assert "a label the model lacks (first labeled after it was trained) counts as missed" in report
    card = root.read_bytes("releases/ds/v0002/card.html").decode()
    assert "items per label (an item counts once for each label in its set)" in card
    assert "<th>exact-set accuracy</th><th>micro F1</th>" in card and m1["model_version"] in card


def test_two_detector_versions_are_compared_on_the_same_eval_images(tmp_path):
    first = make_box_records(40, seed=3, kinds=("square",))
    added = make_box_records(60, seed=4)
    root, m1, manifest, m2 = _two_versions(tmp_path, first, added, "detect", train_detector, DETECT)
    assert manifest["eval_set"]["counted"] == "boxes"
    again = _check_side_by_side(root, m1, manifest, m2, "disc")
    earlier = m2["eval_by_version"][0]
    assert (earlier["map_50"], earlier["map_50_95"]) == (again["map_50"], again["map_50_95"])
    aps = again["per_label_ap"]
    assert aps["disc"] == {"ap_50": 0.0, "ap_50_95": 0.0} and aps["square"]["ap_50"] > 0.2
    assert earlier["map_50"] == pytest.approx(aps["square"]["ap_50"] / 2)  # the disc's 0 is in the mean
    assert set(m2["eval_set"]["per_label_ap"]) == {"disc", "square"}
    report = root.read_bytes(f"models/{m2['model_version']}/report.md").decode()
    assert "## mAP per version (same evaluation set)" in report and "## AP per label (eval set)" in report
    assert f"| v0001 | {m1['model_version']} | {earlier['map_50']:.3f} | {earlier['map_50_95']:.3f} |" in report
    assert "a box of a label the detector lacks counts as missed" in report
    card = root.read_bytes("releases/ds/v0002/card.html").decode()
    assert "boxes per label" in card and "<th>mAP@0.5</th><th>mAP@[.5:.95]</th>" in card


@pytest.mark.parametrize(
    ("task", "figures", "said"),
    [
        ("classify", {"accuracy": 0.5}, "eval-set accuracy 0.500 on 14 items"),
        ("multilabel", {"exact_match": 0.25, "accuracy": None}, "eval-set exact-set accuracy 0.250 on 14 items"),
        ("detect", {"map_50": 0.75}, "eval-set mAP@0.5 0.750 on 14 items"),
        ("detect", {"map_50": None}, "no fixed eval set items"),
    ],
)
def test_the_artifacts_line_names_each_tasks_headline_eval_figure(task, figures, said) -> None:
    from training.eval_report import describe_eval_figure

    assert describe_eval_figure({"task": task, "eval_set": {"n": 14, **figures}}) == said
    assert describe_eval_figure({"task": task, "eval_set": None}) == "no fixed eval set items"

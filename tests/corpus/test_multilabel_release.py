"""Multi-label releases: label list and per-label counts in the manifest and card, stratified splits, exports."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder never needs the Hub; tests have no network

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from corpus.exports.export import export_release
from corpus.releases.build import build_release
from corpus.releases.config import ReleaseConfig
from corpus.releases.multilabel import count_labels, join_label_set, stratum_keys
from corpus.releases.versions import load_release
from corpus.schema import SPLITS, conform, make_record_id
from corpus.store import DataRoot

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 40), "blue": (40, 60, 230), "yellow": (230, 210, 30)}


def make_label_set_records(n: int, seed: int = 0, side: int = 32) -> pa.Table:
    """`n` image records, each holding a square of the colour of every label in its set (one per quadrant);
    "yellow" is rare (about 1 in 6) so stratification has a rare label to keep."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        chosen = [c for c in ("red", "green", "blue") if rng.random() < 0.5] + (
            ["yellow"] if rng.random() < 0.17 else []
        )
        img = rng.integers(0, 50, size=(side, side, 3), dtype=np.uint8)
        half = side // 2
        for q, name in enumerate(sorted(chosen)):
            x, y = (q % 2) * half, (q // 2) * half
            cv2.rectangle(img, (x + 2, y + 2), (x + half - 3, y + half - 3), COLOURS[name], -1)
        ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        assert ok
        rows.append(
            {
                "record_id": make_record_id(buf.tobytes()),
                "kind": "image",
                "image": buf.tobytes(),
                "width": side,
                "height": side,
                "mime": "image/png",
                "labels": sorted(chosen),
                "label": join_label_set(chosen),
                "label_source": "consensus",
                "label_confidence": 0.9,
                "annotators": ["a", "b"],
            }
        )
    return conform(pa.Table.from_pylist(rows))


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> tuple[DataRoot, dict]:
    root = DataRoot(str(tmp_path_factory.mktemp("ml")))
    return root, build_release(root, "colours", make_label_set_records(120, seed=4), ReleaseConfig(task="multilabel"))


def test_strata_are_the_rarest_label() -> None:
    table = pa.table({"labels": [["a", "b"], ["b"], ["b", "c"], []]})
    assert count_labels(table) == {"a": 1, "b": 3, "c": 1}
    assert stratum_keys(table) == ["a", "b", "c", ""]


def test_manifest_lists_labels_and_counts_rows_per_label_and_split(released) -> None:
    root, manifest = released
    assert manifest["task"] == "multilabel"
    assert manifest["labels"] == ["blue", "green", "red", "yellow"]
    release = load_release(root, "colours")
    for split in SPLITS:
        assert manifest["class_counts"][split] == count_labels(release.split(split))
    # Every label, the rare one too, reaches each split near its target share (70/15/15).
    total = {name: sum(manifest["class_counts"][s].get(name, 0) for s in SPLITS) for name in manifest["labels"]}
    for name, n in total.items():
        assert manifest["class_counts"]["test"].get(name, 0) >= 1, name
        assert abs(manifest["class_counts"]["train"][name] / n - 0.7) < 0.15, name
    text = root.read_bytes("releases/colours/v0001/card.html").decode()
    assert "yellow" in text and "class balance per split" in text


def test_a_record_without_a_label_set_is_refused(tmp_path) -> None:
    records = make_label_set_records(10)
    records = records.set_column(
        records.schema.get_field_index("labels"), "labels", pa.nulls(10, pa.list_(pa.string()))
    )
    with pytest.raises(ValueError, match="have no labels set"):
        build_release(DataRoot(str(tmp_path)), "x", records, ReleaseConfig(task="multilabel"))


def test_hf_export_loads_as_a_sequence_of_class_labels(released, tmp_path) -> None:
    datasets = pytest.importorskip("datasets")
    root, manifest = released
    out = export_release(root, "colours", manifest["version"], "hf", str(tmp_path / "hf"))
    ds = datasets.load_dataset(out["path"])
    feature = ds["train"].features["labels"]
    assert feature.feature.names == manifest["labels"]
    truth = {r["record_id"]: r["labels"] for r in load_release(root, "colours").train.to_pylist()}
    for row in ds["train"].select(range(10)):
        assert [feature.feature.names[i] for i in row["labels"]] == truth[row["record_id"]]


def test_csv_export_joins_the_set_and_imagefolder_is_refused(released, tmp_path) -> None:
    root, manifest = released
    out = export_release(root, "colours", manifest["version"], "csv", str(tmp_path / "csv"))
    frame = pd.read_csv(os.path.join(out["path"], "train.csv"), keep_default_na=False)
    truth = {r["record_id"]: r["labels"] for r in load_release(root, "colours").train.to_pylist()}
    for _, row in frame.iterrows():
        assert row["labels"] == ";".join(truth[row["record_id"]])
        names = [manifest["labels"][int(i)] for i in str(row["label_indices"]).split(";") if i != ""]
        assert names == truth[row["record_id"]]
    for fmt in ("imagefolder", "webdataset"):
        with pytest.raises(ValueError, match=f"multi-label: {fmt} holds one class per image"):
            export_release(root, "colours", manifest["version"], fmt, str(tmp_path / fmt))
        assert not os.path.exists(tmp_path / fmt)

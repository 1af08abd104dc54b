"""The model registry owns models/<v>/: predictions and label issues beside each model, the newest model's
predictions, on planted model folders (no training)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from corpus.store import DataRoot
from training.registry import (
    latest_model,
    model_path,
    newest_predictions,
    read_label_issues,
    read_metadata,
    read_predictions,
    write_label_issues,
    write_predictions,
)


def _plant_model(root: DataRoot, version: str, dataset: str, created_at: str) -> None:
    root.write_json(f"models/{version}/metrics.json", {"dataset": dataset, "created_at": created_at})


def _preds(*ids: str) -> pa.Table:
    return pa.table({"record_id": list(ids), "predicted_label": ["cat"] * len(ids)})


@pytest.fixture()
def root(tmp_path) -> DataRoot:
    root = DataRoot(str(tmp_path))
    _plant_model(root, "d-v0001-m001", "d", "2025-01-01T00:00:00")
    _plant_model(root, "d-v0002-m001", "d", "2025-02-01T00:00:00")
    _plant_model(root, "e-v0001-m001", "e", "2025-03-01T00:00:00")
    return root


def test_predictions_round_trip_beside_their_model(root: DataRoot, tmp_path):
    assert read_predictions(root, "d-v0001-m001") is None
    write_predictions(root, "d-v0001-m001", _preds("a", "b"))
    assert (tmp_path / "models/d-v0001-m001/predictions.parquet").is_file()
    assert read_predictions(root, "d-v0001-m001").equals(_preds("a", "b"))
    write_predictions(root, "d-v0001-m001", _preds("c"))  # a rescore replaces the old predictions
    assert read_predictions(root, "d-v0001-m001").column("record_id").to_pylist() == ["c"]
    assert read_predictions(root, "d-v0002-m001") is None


def test_label_issues_round_trip_beside_their_model(root: DataRoot, tmp_path):
    assert read_label_issues(root, "d-v0002-m001") is None
    issues = pa.table({"record_id": ["x", "y"], "given_label": ["cat", "dog"]})
    write_label_issues(root, "d-v0002-m001", issues)
    assert (tmp_path / "models/d-v0002-m001/label_issues.parquet").is_file()
    assert read_label_issues(root, "d-v0002-m001").equals(issues)
    assert read_predictions(root, "d-v0002-m001") is None


def test_writing_beside_an_unknown_model_is_refused(root: DataRoot, tmp_path):
    with pytest.raises(FileNotFoundError, match="model 'd-v0009-m001' not found; models: d-v0001-m001"):
        write_predictions(root, "d-v0009-m001", _preds("a"))
    with pytest.raises(FileNotFoundError, match="not found"):
        write_label_issues(root, "d-v0009-m001", _preds("a"))
    assert not (tmp_path / "models/d-v0009-m001").exists()
    with pytest.raises(ValueError, match="plain folder name"):
        model_path("../state")


def test_newest_predictions_are_the_newest_models_only(root: DataRoot):
    assert latest_model(root, "d") == "d-v0002-m001"
    assert newest_predictions(root, "nothing") == (None, None)
    write_predictions(root, "d-v0001-m001", _preds("old"))
    # The newest model has not scored the pool yet: an older model's predictions are not offered.
    assert newest_predictions(root, "d") == (None, None)
    write_predictions(root, "d-v0002-m001", _preds("new"))
    write_predictions(root, "e-v0001-m001", _preds("other dataset"))
    version, table = newest_predictions(root, "d")
    assert version == "d-v0002-m001" and table.column("record_id").to_pylist() == ["new"]
    assert read_metadata(root, version) == {"dataset": "d", "created_at": "2025-02-01T00:00:00"}

"""The stopping rule as a state update: the first model fixes the stop set, later ones extend the kappa history."""

from __future__ import annotations

import pyarrow as pa

from corpus.schema import PREDICTION_SCHEMA, conform
from labeling.stopping import STOP_SET_SIZE, update_stopping


def _pool(n: int) -> pa.Table:
    ids = [f"r{i:04d}" for i in range(n)]
    return conform(pa.table({"record_id": ids, "kind": ["image"] * n}))


def _predictions(ids: list[str], labels: list[str]) -> pa.Table:
    rows = [
        {"record_id": r, "predicted_label": lab, "confidence": 0.9, "probs": [0.9, 0.1], "embedding": [0.0]}
        for r, lab in zip(ids, labels, strict=True)
    ]
    return pa.Table.from_pylist(rows, schema=PREDICTION_SCHEMA)


def test_first_model_fixes_the_stop_set_and_later_models_add_their_kappa() -> None:
    pool = _pool(500)
    ids = pool.column("record_id").to_pylist()
    first = _predictions(ids, ["cat" if i % 2 else "dog" for i in range(500)])
    start = update_stopping(None, "m1", first, None, pool)
    assert start.result is None and start.state["history"] == [] and start.state["model_version"] == "m1"
    assert len(start.state["stop_set"]) == STOP_SET_SIZE == len(set(start.state["stop_set"]))
    flipped = _predictions(ids, ["dog" if i % 2 else "cat" for i in range(500)])
    moved = update_stopping(start.state, "m2", flipped, first, pool)
    assert moved.state["stop_set"] == start.state["stop_set"]  # the stop set never changes
    assert moved.state["model_version"] == "m2" and moved.result["agreement"] < 0 and not moved.result["stop"]
    steady = moved
    for version in ("m3", "m4", "m5"):
        steady = update_stopping(steady.state, version, flipped, flipped, pool)
    assert steady.result["agreement"] == 1.0 and steady.result["stop"]
    assert len(steady.state["history"]) == 4 and "stop_set" not in steady.result


def test_missing_previous_predictions_keep_the_history_without_a_new_kappa() -> None:
    pool = _pool(50)
    ids = pool.column("record_id").to_pylist()
    preds = _predictions(ids, ["cat"] * 50)
    state = {"model_version": "gone", "stop_set": ids[:20], "history": [0.5, 0.7]}
    update = update_stopping(state, "m9", preds, None, pool)
    assert update.result is None
    assert update.state == {"model_version": "m9", "stop_set": ids[:20], "history": [0.5, 0.7]}

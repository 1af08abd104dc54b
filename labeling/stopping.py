"""The stopping rule: when consecutive models stop changing their minds on a fixed stop set, labeling can stop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from labeling.selection import compute_prediction_agreement, should_stop

# Records watched for the stopping signal: with 200 the kappa's standard error is about 0.02 at kappa 0.95 and
# a chance agreement of 0.25 (4 classes), small beside the gap between STOP_KAPPA (0.99) and a moving model.
STOP_SET_SIZE = 200
# Where a dataset's stopping state lives under the data root: <STOPPING_DIR>/<dataset>.json.
STOPPING_DIR = "state/stopping"


def _predicted_labels(predictions: pa.Table) -> dict[str, str | None]:
    ids = predictions.column("record_id").to_pylist()
    return dict(zip(ids, predictions.column("predicted_label").to_pylist(), strict=True))


def choose_stop_set(pool: pa.Table, n: int, *, seed: int = 0, kind: str = "image") -> list[str]:
    """A fixed, seeded sample of `n` record ids of `kind` (what the model scores) to watch for the stopping
    signal (kept across rounds)."""
    ids = sorted(set(pool.filter(pc.equal(pool.column("kind"), kind)).column("record_id").to_pylist()))
    order = np.random.default_rng(seed).permutation(len(ids))[: min(n, len(ids))]
    return [ids[i] for i in order]


def check_stopping(previous: pa.Table, current: pa.Table, stop_ids: list[str], history: list[float]) -> dict:
    """The stopping signal after a new model: kappa between the last two models' predicted labels on `stop_ids`.

    `previous` and `current` follow PREDICTION_SCHEMA; `history` is the kappas of earlier rounds.
    Returns {"agreement" (this round's kappa; 1 = predictions unchanged), "history" (with it appended),
    "stop" (True once the last rounds' mean passes selection.STOP_KAPPA), "stop_set" (ids compared)}.
    """
    prev = _predicted_labels(previous)
    cur = _predicted_labels(current)
    common = [rid for rid in stop_ids if prev.get(rid) is not None and cur.get(rid) is not None]
    if not common:
        raise ValueError("no stop-set record has a prediction from both models")
    kappa = compute_prediction_agreement(np.array([prev[r] for r in common]), np.array([cur[r] for r in common]))
    history = [*history, kappa]
    return {"agreement": kappa, "history": history, "stop": should_stop(history), "stop_set": len(common)}


@dataclass(frozen=True)
class StoppingUpdate:
    """The stopping state to keep after a new model, and what it says (None before there are two models)."""

    state: dict[str, Any]
    result: dict[str, Any] | None


def update_stopping(
    state: dict[str, Any] | None,
    model_version: str,
    predictions: pa.Table,
    previous: pa.Table | None,
    pool: pa.Table,
    *,
    stop_set_size: int = STOP_SET_SIZE,
    kind: str = "image",
) -> StoppingUpdate:
    """The stopping rule's next state after model `model_version` scored the pool (`predictions`).

    `state` is the kept state ({"model_version", "stop_set", "history"}) or None before the first model;
    `previous` the predictions of `state["model_version"]`, or None when they are gone. The first model
    fixes the stop set (a seeded sample of `pool`'s records of `kind`); each later one appends its kappa with
    the previous model's labels on that set to the history. `result` is check_stopping's dict without the stop-set
    size, or None when there was nothing to compare with.
    """
    if state is None:
        stop_set = choose_stop_set(pool, stop_set_size, kind=kind)
        fresh = {"model_version": model_version, "stop_set": stop_set, "history": []}
        return StoppingUpdate(fresh, None)
    history = list(state.get("history") or [])
    result = None
    if previous is not None:
        result = check_stopping(previous, predictions, state["stop_set"], history)
        history = result["history"]
    kept = {"model_version": model_version, "stop_set": list(state["stop_set"]), "history": history}
    return StoppingUpdate(kept, {k: v for k, v in result.items() if k != "stop_set"} if result else None)

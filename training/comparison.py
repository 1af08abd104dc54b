"""Models compared on a release's fixed evaluation set: this model in detail, and each version's newest model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from torch import nn

from corpus.store import DataRoot
from training.data import image_rows
from training.devices import pick_device
from training.evaluation import compute_confusion, compute_per_class
from training.predict import compute_probs
from training.registry import list_models, load_model, read_metadata
from training.text_model import predict_text_rows


def score_predictions(truth: list[str | None], predicted: list[str], labels: list[str]) -> dict[str, Any]:
    """Accuracy and macro F1 (in [0, 1], low = bad) of predicted label names against true ones.

    An item whose true label the model does not know (absent from its `labels`) counts as wrong, so models
    trained on fewer classes are not flattered; "unknown_label" says how many there were. The confusion
    matrix and per-class metrics cover the known items, over `labels`."""
    index = {lab: k for k, lab in enumerate(labels)}
    known = [i for i, t in enumerate(truth) if t in index]
    cm = compute_confusion(
        np.array([index[truth[i]] for i in known], np.int64),
        np.array([index[predicted[i]] for i in known], np.int64),
        len(labels),
    )
    per_class = compute_per_class(cm, labels)
    f1s = [m["f1"] for m in per_class.values() if m["f1"] is not None]
    n = len(truth)
    correct = sum(1 for t, p in zip(truth, predicted, strict=True) if t == p)
    return {
        "n": n,
        "accuracy": correct / n if n else None,
        "macro_f1": float(np.mean(f1s)) if f1s else None,
        "unknown_label": n - len(known),
        "per_class_metrics": per_class,
        "confusion_matrix": cm.tolist(),
    }


def score_model_on(model: nn.Module, meta: dict[str, Any], rows: pa.Table, device: str = "auto") -> dict[str, Any]:
    """score_predictions of `model` (with metadata `meta`: labels, image size, eval transforms) over the
    labeled image rows `rows`."""
    if meta.get("task") == "text":
        record_ids, probs, _ = predict_text_rows(model, rows, device=pick_device(device))
    else:
        rows = image_rows(rows)
        record_ids, probs, _ = compute_probs(model, meta, rows, device=device)
    truth = dict(zip(rows.column("record_id").to_pylist(), rows.column("label").to_pylist(), strict=True))
    labels = meta["labels"]
    predicted = [labels[k] for k in probs.argmax(1)] if len(probs) else []
    return score_predictions([truth[r] for r in record_ids], predicted, labels)


def _newest_per_release(root: DataRoot, dataset: str) -> dict[str, str]:
    """release version -> the newest model trained on it (by created_at), for `dataset`."""
    newest: dict[str, tuple[str, str]] = {}
    for name in list_models(root):
        meta = read_metadata(root, name)
        if meta.get("dataset") != dataset or not meta.get("release"):
            continue
        key = (meta.get("created_at", ""), name)
        if meta["release"] not in newest or key > newest[meta["release"]]:
            newest[meta["release"]] = key
    return {release: name for release, (_, name) in sorted(newest.items())}


def compare_versions(
    root: DataRoot, dataset: str, rows: pa.Table, *, skip_release: str | None = None, device: str = "cpu"
) -> list[dict[str, Any]]:
    """Each release's newest model of `dataset` scored on the eval rows `rows`, oldest release first:
    [{"release", "model_version", "accuracy", "macro_f1", "n", "unknown_label"}] (an "error" instead of
    scores for a model that cannot be loaded or run, so one broken model never hides the others).
    `skip_release` leaves out the release being trained on (its new model is reported by the caller)."""
    out = []
    for release, name in _newest_per_release(root, dataset).items():
        if release == skip_release:
            continue
        row: dict[str, Any] = {"release": release, "model_version": name}
        try:
            model, meta = load_model(root, name)
            scores = score_model_on(model, meta, rows, device)
            row.update({k: scores[k] for k in ("accuracy", "macro_f1", "n", "unknown_label")})
        except Exception as exc:  # a model of an older code version: report it, keep comparing the rest
            row["error"] = f"{type(exc).__name__}: {exc}"
        out.append(row)
    return out

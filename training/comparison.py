"""Models compared on a release's fixed evaluation set: this model in detail, and each version's newest model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
from torch import nn

from corpus.releases.evalset import SCORE_COLUMNS, select_eval_rows
from corpus.releases.versions import Release
from corpus.store import DataRoot
from corpus.tasks import task_of
from training.box_data import box_labels, box_rows, truth_box_sets
from training.box_evaluation import compute_map
from training.data import image_rows
from training.detector_predict import detect_records, eval_box_transform, to_box_sets
from training.devices import pick_device
from training.evaluation import compute_confusion, compute_per_class
from training.multilabel_evaluation import score_label_sets
from training.multilabel_model import PREDICT_THRESHOLD
from training.predict import compute_probs
from training.registry import list_models, load_model, read_metadata
from training.text_model import predict_text_rows

# The eval_set entries a model's metrics repeat from the release manifest (the items themselves stay there).
EVAL_SET_KEYS = ("id", "size", "target", "since", "frozen", "class_counts", "counted")
Scorer = Callable[[nn.Module, dict[str, Any], pa.Table, str], dict[str, Any]]


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


def _score_classes(model: nn.Module, meta: dict[str, Any], rows: pa.Table, device: str) -> dict[str, Any]:
    """score_predictions of a one-class-per-item model (images, or text) over the labeled rows."""
    if meta.get("task") == "text":
        record_ids, probs, _ = predict_text_rows(model, rows, device=pick_device(device))
    else:
        rows = image_rows(rows)
        record_ids, probs, _ = compute_probs(model, meta, rows, device=device)
    truth = dict(zip(rows.column("record_id").to_pylist(), rows.column("label").to_pylist(), strict=True))
    labels = meta["labels"]
    predicted = [labels[k] for k in probs.argmax(1)] if len(probs) else []
    return score_predictions([truth[r] for r in record_ids], predicted, labels)


def _score_label_sets(model: nn.Module, meta: dict[str, Any], rows: pa.Table, device: str) -> dict[str, Any]:
    """score_label_sets of a multi-label model over the image rows' `labels` sets (sigmoid >= PREDICT_THRESHOLD)."""
    rows = image_rows(rows)
    record_ids, probs, _ = compute_probs(model, meta, rows, device=device)
    truth = dict(zip(rows.column("record_id").to_pylist(), rows.column("labels").to_pylist(), strict=True))
    return score_label_sets([truth[r] for r in record_ids], probs, meta["labels"], threshold=PREDICT_THRESHOLD)


def _score_boxes(model: nn.Module, meta: dict[str, Any], rows: pa.Table, device: str) -> dict[str, Any]:
    """mAP@0.5, mAP@[.5:.95] and AP per label of a detector over the boxed rows, in the images' own pixels.

    Every true box counts, also those of labels the detector lacks: it finds none of them, so each such label
    scores AP 0 and lowers the mean ("unknown_label" counts those boxes, "lacking_labels" names the labels)."""
    rows = box_rows(rows)
    labels = meta["labels"]
    truth, _ = truth_box_sets(rows, box_labels(rows))
    lacking = sorted(set(box_labels(rows)) - set(labels))
    _, found, _, _ = detect_records(model, rows, eval_box_transform(meta), meta["image_size"], device=device)
    scores = compute_map(to_box_sets(found, labels), truth)
    unknown = sum(int(np.isin(t.labels, lacking).sum()) for t in truth)
    return {
        "n": rows.num_rows,
        "map_50": scores["map_50"],
        "map_50_95": scores["map_50_95"],
        "unknown_label": unknown,
        "lacking_labels": lacking,
        "per_label_ap": scores["per_label"],
    }


SCORERS: dict[str, Scorer] = {
    "classify": _score_classes,
    "text": _score_classes,
    "multilabel": _score_label_sets,
    "detect": _score_boxes,
}


def score_model_on(model: nn.Module, meta: dict[str, Any], rows: pa.Table, device: str = "auto") -> dict[str, Any]:
    """A model's scores over labeled rows `rows` (the eval set), by its task type (meta["task"]): accuracy and
    macro F1 for one class per item; exact-set accuracy, micro/macro F1 and mAP for label sets; mAP@0.5 and
    mAP@[.5:.95] for boxes (SCORE_COLUMNS), with the details per class or label. `meta` is the model's metadata
    (labels, image size, eval transforms)."""
    return SCORERS[task_of(meta)](model, meta, rows, device)


def headline(scores: dict[str, Any], task: str) -> dict[str, Any]:
    """The figures a version is compared on (SCORE_COLUMNS of its task), with "n" and "unknown_label"."""
    return {k: scores.get(k) for k in (*(key for key, _ in SCORE_COLUMNS[task]), "n", "unknown_label")}


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
    root: DataRoot,
    dataset: str,
    rows: pa.Table,
    *,
    skip_release: str | None = None,
    device: str = "cpu",
    task: str | None = None,
) -> list[dict[str, Any]]:
    """Each release's newest model of `dataset` scored on the eval rows `rows`, oldest release first:
    [{"release", "model_version", "task", the headline figures of its task, "n", "unknown_label"}] (an "error"
    instead of scores for a model that cannot be loaded or run, or, with `task`, is of another task type, so
    one broken model never hides the others). `skip_release` leaves out the release being trained on (its new
    model is reported by the caller)."""
    out = []
    for release, name in _newest_per_release(root, dataset).items():
        if release == skip_release:
            continue
        row: dict[str, Any] = {"release": release, "model_version": name}
        try:
            model, meta = load_model(root, name)
            row["task"] = task_of(meta)
            if task is not None and row["task"] != task:
                raise ValueError(f"a {row['task']} model cannot be scored on {task} answers")
            row.update(headline(score_model_on(model, meta, rows, device), row["task"]))
        except Exception as exc:  # a model of an older code version: report it, keep comparing the rest
            row["error"] = f"{type(exc).__name__}: {exc}"
        out.append(row)
    return out


def compare_on_eval_set(
    root: DataRoot, release: Release, model: nn.Module, meta: dict[str, Any], device: str = "cpu"
) -> dict[str, Any]:
    """The model just trained on `release` (metadata `meta`: dataset, task, labels, transforms) on the release's
    fixed eval set ("eval_set": the set's identity and the model's scores in detail) and beside it the newest
    model of every earlier version on the same items ("eval_by_version", oldest first, this model last with
    "current": True). Both empty for a release from before eval sets."""
    eval_set = release.manifest.get("eval_set")
    if not eval_set:
        return {"eval_set": None, "eval_by_version": []}
    task = task_of(meta)
    rows = select_eval_rows(release.test, eval_set)
    mine = score_model_on(model, meta, rows, device)
    earlier = compare_versions(root, meta["dataset"], rows, skip_release=release.version, device=device, task=task)
    current = {"release": release.version, "current": True, "task": task, **headline(mine, task)}
    return {
        "eval_set": {**{k: eval_set.get(k) for k in EVAL_SET_KEYS}, **mine},
        "eval_by_version": [*earlier, current],
    }

"""The model report: a trained model's metrics as Markdown (report.md beside it, and its Prefect artifact)."""

from __future__ import annotations

import json
from typing import Any

from training.detection_report import render_detection_report
from training.eval_report import eval_by_version_lines, eval_set_head
from training.eval_report import fmt as _fmt


def report_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per class: precision, recall, F1 (in [0, 1], low = bad) and test support."""
    per_class = metrics.get("per_class_metrics") or {
        label: {"recall": acc, "precision": None, "f1": None, "support": None}
        for label, acc in (metrics.get("per_class") or {}).items()
    }
    return [
        {
            "label": label,
            "precision": m.get("precision"),
            "recall": m.get("recall"),
            "f1": m.get("f1"),
            "support": m.get("support"),
        }
        for label, m in per_class.items()
    ]


def _per_class_table(metrics: dict[str, Any]) -> list[str]:
    """report_rows of `metrics` as a Markdown table."""
    lines = ["| label | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    return lines + [
        f"| {r['label']} | {_fmt(r['precision'])} | {_fmt(r['recall'])} | {_fmt(r['f1'])} | {_fmt(r['support'])} |"
        for r in report_rows(metrics)
    ]


def _model_lines(metrics: dict[str, Any]) -> list[str]:
    """What was trained: backbone, pretrained weights (source, sha256), transfer mode, size; and the config."""
    model = metrics.get("model") or {}
    weights = model.get("weights") or {}
    rows = [
        ("backbone", f"{model.get('backbone')} ({model.get('arch')})"),
        ("weights source", weights.get("source") or "random initialisation"),
        ("weights sha256", f"`{weights['sha256']}`" if weights.get("sha256") else None),
        ("weights format", weights.get("format")),
        ("transfer mode", model.get("transfer")),
        ("parameters / trainable", f"{model.get('parameters')} / {model.get('trainable_parameters')}"),
        ("image size / lr schedule", f"{metrics.get('image_size')} / {metrics.get('lr_schedule')}"),
        ("processes (DDP world size)", metrics.get("world_size", 1)),
    ]
    config = json.dumps(metrics.get("config") or {}, indent=2, sort_keys=True)
    return [
        "",
        "## Model",
        "",
        "| | |",
        "|---|---|",
        *[f"| {name} | {_fmt(value)} |" for name, value in rows],
        "",
        "<details><summary>training config</summary>",
        "",
        "```json",
        config,
        "```",
        "",
        "</details>",
    ]


def _confusion_lines(labels: list[str], cm: list[list[int]] | None, title: str) -> list[str]:
    if not cm:
        return []
    lines = ["", f"## {title} (rows: true, columns: predicted)", ""]
    lines += ["| | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for label, row in zip(labels, cm, strict=True):
        lines.append(f"| **{label}** | " + " | ".join(str(v) for v in row) + " |")
    return lines


def _eval_set_lines(metrics: dict[str, Any]) -> list[str]:
    """The fixed eval set: this model's scores on it per class and confusion (per label and AP for label sets),
    then each version's newest model on the same items, side by side."""
    eval_set = metrics.get("eval_set") or {}
    lines = eval_set_head(metrics)
    if metrics.get("task") == "multilabel" and eval_set:
        lines += _per_label_lines(eval_set, f"Per label (eval set, sigmoid >= {_fmt(eval_set.get('threshold'), 2)})")
    elif eval_set:
        lines += ["", *_per_class_table({"per_class_metrics": eval_set.get("per_class_metrics") or {}})]
        confusion = eval_set.get("confusion_matrix")
        lines += _confusion_lines(metrics.get("labels", []), confusion, "Confusion on the eval set")
    return lines + eval_by_version_lines(metrics)


def _multilabel_figures(metrics: dict[str, Any]) -> list[tuple[str, Any]]:
    """The headline figures of a multi-label model (training.multilabel_evaluation)."""
    return [
        ("test micro F1", metrics.get("test_micro_f1")),
        ("test macro F1", metrics.get("test_macro_f1")),
        ("test mAP (over labels)", metrics.get("test_map")),
        ("test exact-set match", metrics.get("test_exact_match")),
        ("best val micro F1", metrics.get("val_accuracy")),
    ]


def _per_label_lines(scores: dict[str, Any], title: str) -> list[str]:
    """Per label: precision, recall, F1 at the model's threshold, average precision, support."""
    lines = ["", f"## {title}", "", "| label | precision | recall | F1 | AP | support |", "|---|---|---|---|---|---|"]
    for label, m in (scores.get("per_label_metrics") or {}).items():
        values = [m.get(k) for k in ("precision", "recall", "f1", "average_precision", "support")]
        lines.append(f"| {label} | " + " | ".join(_fmt(v) for v in values) + " |")
    return lines


def render_report(metrics: dict[str, Any]) -> str:
    """Markdown summary of a training run: what it trained on, how, and how well (per class, confusion,
    calibration). `metrics` is train_model's return value (or a model's metrics.json)."""
    if metrics.get("task") == "detect":
        return render_detection_report(metrics)
    labels = metrics.get("labels", [])
    lines = [
        f"# Model {metrics.get('model_version', '(unpublished)')}",
        "",
        f"Release **{metrics.get('dataset')}@{metrics.get('release')}** (`{metrics.get('release_id')}`), "
        f"recipe **{metrics.get('recipe')}** ({(metrics.get('augmentation') or {}).get('source', 'release')}).",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    figures = [
        ("test accuracy", metrics.get("test_accuracy")),
        ("test macro F1", metrics.get("test_macro_f1")),
        ("test ECE (0 = calibrated)", metrics.get("test_ece")),
        ("best val accuracy", metrics.get("val_accuracy")),
        ("epochs run / best", f"{metrics.get('epochs_run')} / {metrics.get('best_epoch')}"),
        ("early stopped", metrics.get("early_stopped")),
        ("resumed from epoch", metrics.get("resumed_from_epoch")),
        ("device / precision", f"{metrics.get('device_name', metrics.get('device'))} / {metrics.get('precision')}"),
        ("effective batch", metrics.get("effective_batch_size")),
        ("loader workers", metrics.get("loader_workers")),
        ("train images/s", metrics.get("train_images_per_s")),
        ("time waiting for data", metrics.get("data_wait_fraction")),
        ("train / val / test images", f"{metrics.get('n_train')} / {metrics.get('n_val')} / {metrics.get('n_test')}"),
    ]
    if metrics.get("task") == "multilabel":
        figures[:4] = _multilabel_figures(metrics)
    lines += [f"| {name} | {_fmt(value)} |" for name, value in figures]
    lines += _eval_set_lines(metrics)
    lines += _model_lines(metrics)
    if metrics.get("task") == "multilabel":
        lines += _per_label_lines(metrics, f"Per label (test, sigmoid >= {_fmt(metrics.get('threshold'), 2)})")
    else:
        lines += ["", "## Per class (test)", "", *_per_class_table(metrics)]
    lines += _confusion_lines(labels, metrics.get("confusion_matrix"), "Confusion matrix (test)")
    bins = (metrics.get("calibration") or {}).get("bins") or []
    if bins:
        lines += ["", "## Calibration (reliability)", "", "| confidence bin | n | mean confidence | accuracy |"]
        lines += ["|---|---|---|---|"]
        for b in bins:
            span = f"{b['lo']:.2f}–{b['hi']:.2f}"
            lines.append(f"| {span} | {b['count']} | {b['confidence']:.3f} | {b['accuracy']:.3f} |")
    return "\n".join(lines) + "\n"

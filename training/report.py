"""The run report: a trained model's metrics as Markdown and table rows, for a Prefect artifact or a file."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


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


def render_report(metrics: dict[str, Any]) -> str:
    """Markdown summary of a training run: what it trained on, how, and how well (per class, confusion,
    calibration). `metrics` is train_model's return value (or a model's metrics.json)."""
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
    lines += [f"| {name} | {_fmt(value)} |" for name, value in figures]
    lines += ["", "## Per class (test)", "", "| label | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    lines += [
        f"| {r['label']} | {_fmt(r['precision'])} | {_fmt(r['recall'])} | {_fmt(r['f1'])} | {_fmt(r['support'])} |"
        for r in report_rows(metrics)
    ]
    cm = metrics.get("confusion_matrix")
    if cm:
        lines += ["", "## Confusion matrix (rows: true, columns: predicted)", ""]
        lines += ["| | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
        for label, row in zip(labels, cm, strict=True):
            lines.append(f"| **{label}** | " + " | ".join(str(v) for v in row) + " |")
    bins = (metrics.get("calibration") or {}).get("bins") or []
    if bins:
        lines += ["", "## Calibration (reliability)", "", "| confidence bin | n | mean confidence | accuracy |"]
        lines += ["|---|---|---|---|"]
        for b in bins:
            span = f"{b['lo']:.2f}–{b['hi']:.2f}"
            lines.append(f"| {span} | {b['count']} | {b['confidence']:.3f} | {b['accuracy']:.3f} |")
    return "\n".join(lines) + "\n"

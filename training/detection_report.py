"""The detector's model report: a detect model's metrics (mAP@0.5, mAP@[.5:.95], AP per label) as Markdown."""

from __future__ import annotations

from typing import Any

from training.eval_report import eval_by_version_lines, eval_set_head
from training.eval_report import fmt as _fmt


def _ap_lines(per_label_ap: dict[str, dict[str, Any]], title: str) -> list[str]:
    """AP@0.5 and AP@[.5:.95] per label, sorted by label."""
    lines = ["", f"## {title}", "", "| label | AP@0.5 | AP@[.5:.95] |", "|---|---|---|"]
    for label, ap in sorted(per_label_ap.items()):
        lines.append(f"| {label} | {_fmt(ap.get('ap_50'))} | {_fmt(ap.get('ap_50_95'))} |")
    return lines


def render_detection_report(metrics: dict[str, Any]) -> str:
    """Markdown summary of a detector's training run: what it trained on, how, its mAP on the fixed eval set
    beside every earlier version's, and its test mAP overall and per label (each in [0, 1], low = bad).
    `metrics` is train_detector's return value (or its metrics.json)."""
    model = metrics.get("model") or {}
    weights = model.get("weights") or {}
    lines = [
        f"# Model {metrics.get('model_version', '(unpublished)')} (detector)",
        "",
        f"Release **{metrics.get('dataset')}@{metrics.get('release')}** (`{metrics.get('release_id')}`), "
        f"box recipe **{metrics.get('recipe')}**.",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    figures = [
        ("test mAP@0.5", metrics.get("test_map_50")),
        ("test mAP@[.5:.95]", metrics.get("test_map_50_95")),
        ("best val mAP@[.5:.95]", metrics.get("val_map_50_95")),
        ("epochs run / best", f"{metrics.get('epochs_run')} / {metrics.get('best_epoch')}"),
        ("early stopped", metrics.get("early_stopped")),
        ("device / precision", f"{metrics.get('device_name', metrics.get('device'))} / {metrics.get('precision')}"),
        ("train images/s", metrics.get("train_images_per_s")),
        ("train / val / test images", f"{metrics.get('n_train')} / {metrics.get('n_val')} / {metrics.get('n_test')}"),
        ("test boxes of labels train lacks", metrics.get("n_eval_unknown_label")),
        ("architecture", f"{model.get('arch')} on {model.get('backbone')} (stride {model.get('stride')})"),
        ("weights source", weights.get("source") or "random initialisation"),
        ("weights sha256", f"`{weights['sha256']}`" if weights.get("sha256") else None),
        ("transfer mode", model.get("transfer")),
        ("parameters / trainable", f"{model.get('parameters')} / {model.get('trainable_parameters')}"),
        ("image size / lr schedule", f"{metrics.get('image_size')} / {metrics.get('lr_schedule')}"),
    ]
    lines += [f"| {name} | {_fmt(value)} |" for name, value in figures]
    lines += eval_set_head(metrics)
    if metrics.get("eval_set"):
        lines += _ap_lines(metrics["eval_set"].get("per_label_ap") or {}, "AP per label (eval set)")
    lines += eval_by_version_lines(metrics)
    lines += _ap_lines(metrics.get("per_label_ap") or {}, "AP per label (test)")
    return "\n".join(lines) + "\n"

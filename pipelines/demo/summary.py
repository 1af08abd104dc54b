"""The demo's summary: what each stage of the loop did, as JSON a script can read and as a terminal table."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from corpus.releases.evalset import SCORE_COLUMNS
from corpus.tasks import task_of
from training.eval_report import describe_test_figures


def build_summary(
    ingest: dict[str, Any], rounds: list[dict[str, Any]], releases: list[dict[str, Any]], models: list[dict[str, Any]]
) -> dict[str, Any]:
    """The demo summary (its shape is a contract: scripts read data/demo/summary.json)."""
    crawl, curate, scrub = ingest["crawl"], ingest["curate"], ingest["scrub"]
    counters = curate["counters"]
    scrub_counters = scrub["counters"]
    project_id = rounds[-1]["project_id"] if rounds else None
    return {
        "crawl": {
            "pages": crawl.get("pages"),
            "images": crawl.get("images"),
            "bytes": crawl.get("bytes"),
            "robots_denied": crawl.get("robots_forbidden", crawl.get("robots_denied")),
            "output": crawl.get("output"),
        },
        "curate": {
            "kept": curate["kept"],
            "exact_duplicates": counters.get("exact_duplicates", 0),
            "near_duplicates": counters.get("near_duplicates", 0),
            "duplicate_pages": counters.get("duplicate_pages", 0),
            "dropped_by_reason": curate["dropped_by_reason"],
            "output": curate["output"],
        },
        "scrub": {
            "pii_by_type": {key.removeprefix("pii_"): n for key, n in scrub_counters.items() if key.startswith("pii_")},
            "faces_blurred": scrub_counters.get("faces_blurred", 0),
            "exif_stripped": scrub_counters.get("exif_stripped", 0),
            "records_with_pii": scrub_counters.get("records_with_pii", 0),
            "output": scrub["output"],
        },
        "label_rounds": [_round_summary(r) for r in rounds],
        "releases": [
            {
                "version": m["version"],
                "parent": m.get("parent"),
                **{split: m["rows"].get(split, 0) for split in ("train", "val", "test")},
                **({"task": "detect"} if task_of(m) == "detect" else {}),  # classify's shape as it was
                "path": m.get("path"),
            }
            for m in releases
        ],
        "models": [_model_summary(m) for m in models],
        "label_studio": {"url": rounds[-1]["project_url"] if rounds else None, "project_id": project_id},
    }


def _round_summary(r: dict[str, Any]) -> dict[str, Any]:
    """One label round as the summary shows it; a detect round adds its box F1 between annotators and on gold."""
    entry = {
        "round": r["round"],
        "strategy": r["strategy"],
        "model_version": r["model_version"],
        "tasks_pushed": r["tasks_pushed"],
        "predictions_pushed": r["predictions_pushed"],
        "annotations": r["annotations"],
        "labeled_records": r["labeled_records"],
        "agreement": r["agreement"].get("percent_agreement"),
        "krippendorff_alpha": r["agreement"].get("krippendorff_alpha"),
        "items_with_overlap": r["agreement"].get("items_with_overlap"),
        "gold_tasks": len(r.get("gold") or []),
        "review_queue": r.get("review"),
        "quality_gate": _gate_summary(r.get("quality_gate")),
        "annotators": [
            {k: card.get(k) for k in ("annotator", "gold_accuracy", "consensus_agreement", "annotations")}
            for card in r.get("scorecards") or []
        ],
    }
    if r.get("task") == "detect":
        entry.update(task="detect", box_f1=r["agreement"].get("box_f1"), gold_box_f1=r.get("gold_box_f1"))
    return entry


def _model_summary(m: dict[str, Any]) -> dict[str, Any]:
    """One trained model as the summary shows it; a detector adds its test mAP@0.5 and mAP@[.5:.95]."""
    headline, headline_name = SCORE_COLUMNS[task_of(m)][0]
    entry = {
        "version": m["model_version"],
        "release": m.get("release"),
        "task": m.get("task", "classify"),
        "test_accuracy": m.get("test_accuracy"),
        # multilabel models (training.multilabel_evaluation); None for one class per image
        "test_micro_f1": m.get("test_micro_f1"),
        "test_map": m.get("test_map"),
        # The same items for every version: the comparison that says whether a version is better.
        "eval_set_items": (m.get("eval_set") or {}).get("n"),
        # each version's headline figure of the task (accuracy, exact-set accuracy, mAP@0.5), as the card's first
        "eval_figure": headline_name,
        "eval_by_version": {r["release"]: r.get(headline) for r in m.get("eval_by_version") or []},
        "device": m.get("device"),
        "scored": m.get("scored"),
        "label_issues": m.get("label_issues"),
        "stop_labeling": bool((m.get("stopping") or {}).get("stop")),
    }
    if m.get("task") == "detect":
        entry.update(test_map_50=m.get("test_map_50"), test_map_50_95=m.get("test_map_50_95"))
    return entry


def _figure(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _gate_summary(gate: dict[str, Any] | None) -> dict[str, Any] | None:
    """A round's gate as the summary shows it: passed, and each criterion's value, threshold and verdict."""
    if gate is None:
        return None
    return {
        "passed": gate["passed"],
        **{c["name"]: {"value": c["value"], "threshold": c["threshold"], "ok": c["ok"]} for c in gate["criteria"]},
    }


def render_summary(summary: dict[str, Any]) -> Table:
    """The summary as one table for the terminal."""
    table = Table(title="Flywheel demo", show_lines=False)
    table.add_column("stage", style="bold")
    table.add_column("result")
    c, k, s = summary["crawl"], summary["curate"], summary["scrub"]
    table.add_row("crawl", f"{c['pages']} pages, {c['images']} images")
    table.add_row(
        "curate",
        f"{k['kept']} kept; {k['exact_duplicates']} exact + {k['near_duplicates']} near duplicates dropped; "
        f"{k['dropped_by_reason']}",
    )
    table.add_row(
        "scrub", f"PII {s['pii_by_type']}; {s['faces_blurred']} faces blurred; {s['exif_stripped']} EXIF stripped"
    )
    for r in summary["label_rounds"]:
        agreement = "n/a" if r["agreement"] is None else f"{r['agreement']:.2f}"
        if r.get("task") == "detect":
            agreement = f"box F1 {_figure(r['box_f1'])}, gold box F1 {_figure(r['gold_box_f1'])}"
        gate = r.get("quality_gate")
        verdict = "" if gate is None else f"; quality gate {'passed' if gate['passed'] else 'failed'}"
        table.add_row(
            f"label round {r['round']}",
            f"{r['strategy']}: {r['tasks_pushed']} tasks, {r['annotations']} annotations, agreement {agreement}"
            + verdict,
        )
    for rel in summary["releases"]:
        table.add_row(f"release {rel['version']}", f"train {rel['train']} / val {rel['val']} / test {rel['test']}")
    for m in summary["models"]:
        by_version = ", ".join(
            f"{release} {'—' if acc is None else f'{acc:.3f}'}"
            for release, acc in (m.get("eval_by_version") or {}).items()
        )
        on_eval = f"; fixed eval set ({m.get('eval_set_items')} items), {m.get('eval_figure')}: {by_version}"
        on_eval = on_eval if by_version else ""
        table.add_row(f"model {m['version']}", f"{describe_test_figures(m)} ({m['device']}){on_eval}")
    table.add_row("Label Studio", str(summary["label_studio"]["url"]))
    return table

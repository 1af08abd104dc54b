"""Watching the demo's flywheel turn: round, release and model as they appear, then the summary from what is stored."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from corpus.releases.versions import MANIFEST_FILE, dataset_folder, list_releases
from corpus.store import DataRoot
from labeling.round_state import LabelRound
from labeling.round_store import list_round_numbers, load_round
from pipelines.demo.summary import build_summary
from training.eval_report import describe_test_figures
from training.registry import list_models, read_label_issues, read_metadata, read_predictions


def _models_of(root: DataRoot, dataset: str) -> list[dict[str, Any]]:
    metas = [read_metadata(root, name) for name in list_models(root)]
    return sorted((m for m in metas if m.get("dataset") == dataset), key=lambda m: m.get("created_at", ""))


def _rounds_of(root: DataRoot, dataset: str) -> list[LabelRound]:
    return [load_round(root, dataset, n) for n in list_round_numbers(root, dataset)]


def _announce_new(root: DataRoot, dataset: str, seen: set[str], say: Callable[[str], None]) -> None:
    """A line for every round verdict, release and model that appeared since the last look."""
    for round_ in _rounds_of(root, dataset):
        key = f"{round_.id}:{round_.status}"
        if key in seen or round_.status not in ("closed", "released", "labeling"):
            continue
        seen.add(key)
        if round_.status == "labeling":
            say(f"{round_.id} is open: {len(round_.tasks)} tasks by {round_.strategy}, labeled by the crowd")
        elif round_.verdict is not None and f"{round_.id}:verdict" not in seen:
            seen.add(f"{round_.id}:verdict")
            verdict = "passed" if round_.verdict["passed"] else f"FAILED ({'; '.join(round_.verdict['reasons'])})"
            say(f"{round_.id} closed ({round_.close_reason}): quality gate {verdict}")
    for version in list_releases(root, dataset):
        if f"release:{version}" not in seen:
            seen.add(f"release:{version}")
            say(f"release {version} published")
    for meta in _models_of(root, dataset):
        if f"model:{meta['model_version']}" not in seen:
            seen.add(f"model:{meta['model_version']}")
            say(f"model {meta['model_version']}: {describe_test_figures(meta)} on {meta['device']}")


def wait_for_rounds(
    root: DataRoot, dataset: str, rounds: int, timeout_s: float, say: Callable[[str], None], *, poll_s: float = 2.0
) -> None:
    """Wait until `rounds` models of `dataset` are trained (each after its round closed and was released),
    saying what happens meanwhile. TimeoutError when the flywheel stops turning (a round that failed its
    gate, no worker), naming the last thing that happened."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _announce_new(root, dataset, seen, say)
        models = _models_of(root, dataset)
        # A model counts once its train flow has scored the pool (predictions are written after the weights).
        if len(models) >= rounds and all(read_predictions(root, m["model_version"]) is not None for m in models):
            return
        failed = [r for r in _rounds_of(root, dataset) if r.verdict is not None and not r.verdict["passed"]]
        if failed:
            raise RuntimeError(f"{failed[-1].id} failed its quality gate: {'; '.join(failed[-1].verdict['reasons'])}")
        time.sleep(poll_s)
    raise TimeoutError(
        f"after {timeout_s:.0f} s only {len(_models_of(root, dataset))} of {rounds} models of {dataset!r} are trained: "
        "are the deployments registered and a worker running (flywheel ui)?"
    )


def round_entry(round_: LabelRound) -> dict[str, Any]:
    """A stored round in the shape build_summary reads."""
    summary = round_.summary or {}
    return {
        "round": round_.number,
        "strategy": round_.strategy,
        "model_version": round_.model_version,
        "tasks_pushed": len(round_.tasks),
        "predictions_pushed": len(round_.tasks) if round_.model_version else 0,
        "annotations": summary.get("annotations", 0),
        "labeled_records": summary.get("labeled_records", 0),
        "agreement": summary.get("agreement") or {},
        "gold_box_f1": summary.get("gold_box_f1"),
        "task": round_.task,
        "gold": list(round_.gold),
        "review": summary.get("review"),
        "scorecards": summary.get("scorecards") or [],
        "quality_gate": round_.verdict,
        "project_id": round_.project_id,
        "project_url": (round_.progress or {}).get("view_url"),
        "status": round_.status,
        "close_reason": round_.close_reason,
        "released_as": round_.released_as,
    }


def _model_entry(root: DataRoot, meta: dict[str, Any]) -> dict[str, Any]:
    """A stored model with what scoring the pool left beside it (predictions, label issues)."""
    predictions = read_predictions(root, meta["model_version"])
    issues = read_label_issues(root, meta["model_version"])
    return {
        **meta,
        "scored": predictions.num_rows if predictions is not None else 0,
        "label_issues": issues.num_rows if issues is not None else 0,
    }


def collect_summary(root: DataRoot, ingest: dict[str, Any], dataset: str) -> dict[str, Any]:
    """The demo summary from what the loop stored: closed rounds, releases and models of `dataset`."""
    rounds = [round_entry(r) for r in _rounds_of(root, dataset) if r.verdict is not None]
    releases = []
    for version in list_releases(root, dataset):
        manifest = root.read_json(f"{dataset_folder(dataset)}/{version}/{MANIFEST_FILE}")
        releases.append({**manifest, "path": root.uri(f"{dataset_folder(dataset)}/{version}")})
    models = [_model_entry(root, m) for m in _models_of(root, dataset)]
    summary = build_summary(ingest, rounds, releases, models)
    summary["open_round"] = next((round_entry(r) for r in _rounds_of(root, dataset) if r.is_open), None)
    return summary

"""The demo: the whole loop on the sample site, two label rounds, and the summary a script can read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from prefect import flow
from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Table

from corpus.settings import get_settings
from corpus.store import open_data_root
from labeling.gate import QualityGate
from pipelines.config import CrawlParams, IngestParams, LabelRoundParams, ReleaseParams, SimulationParams, TrainParams
from pipelines.flows import ingest_flow, label_round_flow, release_flow, train_flow
from training.train import TrainConfig

console = Console()
GOLD_PATH = "demo/gold.json"


class DemoParams(BaseModel):
    """The demo loop: ingest the sample site, then (label round -> release -> train) per budget."""

    site_url: str = Field(..., description="The sample site's URL on 127.0.0.1.")
    truth_path: str = Field(..., description="The sample site's ground truth, read only by simulated annotators.")
    labels: list[str] = Field(..., min_length=2)
    dataset: str = "demo"
    project_title: str = "Flywheel demo"
    budgets: list[int] = Field([80, 80], min_length=1, description="Tasks pushed per label round.")
    epochs: int = Field(30, ge=1)
    gold_count: int = Field(12, ge=0, description="Records a lead labels up front (from the truth) as gold.")
    gate: QualityGate = Field(
        default_factory=lambda: QualityGate(min_krippendorff_alpha=0.5, min_new_labels=10),
        description="The demo's own quality gate. Its simulated annotators (5/10/20% errors, independent of the "
        "item) should measure alpha ~0.71 on a class-balanced batch (0.70 measured in round 1), but measured 0.58 on "
        "round 2's model-chosen batch: the same raw agreement, likely scored against the higher chance agreement of "
        "a class-skewed batch. 0.5 lets the demo show the loop; production keeps Krippendorff's 0.667. 10 new "
        "labels fit the small budgets of the end-to-end test.",
    )
    data_root: str | None = None


def _stage(line: str) -> None:
    console.print(f"[bold cyan]▸[/] {line}")


@flow(name="demo", log_prints=True)
def demo_flow(params: DemoParams) -> dict[str, Any]:
    """crawl -> curate -> scrub -> (label round -> release -> train) x len(budgets); returns the summary."""
    data_root = params.data_root or get_settings().data_root
    ingest = ingest_flow(
        IngestParams(
            crawl=CrawlParams(
                start_url=params.site_url.rstrip("/") + "/index.html",
                source="sample-site",
                allowed_private_hosts=["127.0.0.1"],  # the sample site is served on loopback
            ),
            data_root=data_root,
        )
    )
    crawl, curate, scrub = ingest["crawl"], ingest["curate"], ingest["scrub"]
    gold_path = write_demo_gold(data_root, ingest["pool"], params.truth_path, params.gold_count)
    _stage(f"crawl: {crawl.get('pages')} pages, {crawl.get('images')} images")
    _stage(f"curate: {curate['kept']} kept, {curate['dropped']} dropped {curate['dropped_by_reason']}")
    _stage(f"scrub: {scrub['counters']}")
    rounds, releases, models = [], [], []
    for number, budget in enumerate(params.budgets, start=1):
        label_round = label_round_flow(
            LabelRoundParams(
                dataset=params.dataset,
                pool=ingest["pool"],
                labels=params.labels,
                project_title=params.project_title,
                budget=budget,
                simulate=SimulationParams(truth_path=params.truth_path, seed=number),
                gold_path=gold_path,
                gate=params.gate,
                seed=number,
                data_root=data_root,
            )
        )
        rounds.append({"round": number, **label_round})
        gate = label_round["quality_gate"]
        _stage(
            f"label round {number}: {label_round['tasks_pushed']} tasks by {label_round['strategy']}, "
            f"{label_round['annotations']} annotations, alpha {label_round['agreement'].get('krippendorff_alpha')}, "
            f"{label_round['review']} to review; quality gate "
            + ("passed" if gate["passed"] else f"FAILED ({'; '.join(gate['reasons'])})")
        )
        # The demo releases every round itself, in order, so that each train step has its release; with the
        # deployments of deploy/prefect.yaml, only a round that passed its gate starts a release.
        manifest = release_flow(
            ReleaseParams(dataset=params.dataset, pool=ingest["pool"], gold_path=gold_path, data_root=data_root)
        )
        releases.append(manifest)
        _stage(f"release {manifest['version']}: {manifest['rows']}")
        trained = train_flow(
            TrainParams(
                dataset=params.dataset,
                version=manifest["version"],
                pool=ingest["pool"],
                train=TrainConfig(epochs=params.epochs),
                data_root=data_root,
            )
        )
        models.append(trained)
        _stage(f"train {trained['model_version']}: test accuracy {trained['test_accuracy']:.3f} on {trained['device']}")
    return build_summary(ingest, rounds, releases, models)


def write_demo_gold(data_root: str, pool: str, truth_path: str, count: int) -> str | None:
    """The demo's gold file: `count` pool images with their true labels, as a lead annotator would label
    them up front. Written under the data root; the pipeline reads only this file, never the truth."""
    if count == 0:
        return None
    root = open_data_root(data_root)
    truth = json.loads(Path(truth_path).read_text())["images"]
    records = root.read_table(pool).select(["record_id", "kind", "url"]).to_pylist()
    known = sorted(
        (r["record_id"], truth[urlsplit(r["url"]).path]["label"])
        for r in records
        if r["kind"] == "image" and truth.get(urlsplit(r["url"]).path, {}).get("label")
    )
    chosen = [known[i] for i in np.random.default_rng(0).permutation(len(known))[:count]]
    root.write_json(GOLD_PATH, dict(chosen))
    return GOLD_PATH


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
        "label_rounds": [
            {
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
            for r in rounds
        ],
        "releases": [
            {
                "version": m["version"],
                "parent": m.get("parent"),
                **{split: m["rows"].get(split, 0) for split in ("train", "val", "test")},
                "path": m.get("path"),
            }
            for m in releases
        ],
        "models": [
            {
                "version": m["model_version"],
                "release": m.get("release"),
                "test_accuracy": m["test_accuracy"],
                "device": m.get("device"),
                "scored": m.get("scored"),
                "label_issues": m.get("label_issues"),
                "stop_labeling": bool((m.get("stopping") or {}).get("stop")),
            }
            for m in models
        ],
        "label_studio": {"url": rounds[-1]["project_url"] if rounds else None, "project_id": project_id},
    }


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
        table.add_row(f"model {m['version']}", f"test accuracy {m['test_accuracy']:.3f} ({m['device']})")
    table.add_row("Label Studio", str(summary["label_studio"]["url"]))
    return table

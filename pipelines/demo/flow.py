"""The demo: the whole loop on the sample site, two label rounds, and the summary a script can read."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from prefect import flow
from pydantic import BaseModel, Field
from rich.console import Console

from corpus.pool import select_records
from corpus.settings import get_settings
from corpus.store import open_data_root
from crawlers.config import CrawlConfig
from labeling.gate import QualityGate
from pipelines.config import IngestParams, LabelRoundParams, ReleaseParams, TrainParams
from pipelines.demo.annotators import SimulatedAnnotator, simulate_labeling
from pipelines.demo.summary import build_summary
from pipelines.ingest import ingest_flow
from pipelines.release import release_flow
from pipelines.rounds import label_push_flow, label_review_flow
from pipelines.runtime import open_label_studio, open_root, task
from pipelines.train import train_flow
from training.config import TrainConfig

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


class SimulationParams(BaseModel):
    """Simulated annotators: they answer from the sample site's ground truth, which nothing else reads."""

    truth_path: str = Field(..., description="truth.json of the sample site (never read by the pipeline itself).")
    error_rates: list[float] = Field([0.05, 0.1, 0.2], description="One simulated annotator per error rate.")
    seed: int = 0


def _stage(line: str) -> None:
    console.print(f"[bold cyan]▸[/] {line}")


@flow(name="demo", log_prints=True)
def demo_flow(params: DemoParams) -> dict[str, Any]:
    """crawl -> curate -> scrub -> (label round -> release -> train) x len(budgets); returns the summary."""
    data_root = params.data_root or get_settings().data_root
    ingest = ingest_flow(
        IngestParams(
            crawl=CrawlConfig(
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
        round_params = LabelRoundParams(
            dataset=params.dataset,
            pool=ingest["pool"],
            labels=params.labels,
            project_title=params.project_title,
            budget=budget,
            gold_path=gold_path,
            gate=params.gate,
            seed=number,
            data_root=data_root,
        )
        # What production does with people, the demo does with simulated annotators: push, answer, review.
        pushed = label_push_flow(round_params)
        simulated = answer_as_simulated_annotators(
            round_params, pushed, SimulationParams(truth_path=params.truth_path, seed=number)
        )
        label_round = {**label_review_flow(round_params, pushed), "simulated": simulated}
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


@task
def answer_as_simulated_annotators(
    params: LabelRoundParams, pushed: dict[str, Any], sim: SimulationParams
) -> dict[str, Any]:
    """The demo's annotators answer the pushed round's tasks from the sample site's ground truth: each
    ordinary task once (some by several, as the round's overlap plan says), every gold task by everyone."""
    records = select_records(open_root(params.data_root).read_table(pushed["pool"]), pushed["record_ids"])
    url_of = dict(zip(records.column("record_id").to_pylist(), records.column("url").to_pylist(), strict=True))
    truth = json.loads(Path(sim.truth_path).read_text())["images"]

    def true_label(data: dict[str, Any]) -> str | None:
        url = url_of.get(data.get("record_id", ""))
        entry = truth.get(urlsplit(url).path) if url else None
        return entry["label"] if entry else None

    client = open_label_studio()
    gold_tasks = set(pushed["gold_task_ids"])
    wanted = set(pushed["task_ids"])
    tasks = [t for t in client.list_tasks(pushed["project_id"]) if t["id"] in wanted]
    annotators = [SimulatedAnnotator(f"annotator{i + 1}", rate) for i, rate in enumerate(sim.error_rates)]
    answer = partial(simulate_labeling, client, pushed["project_id"], truth=true_label, labels=params.labels)
    ordinary = answer(
        [t for t in tasks if t["id"] not in gold_tasks],
        annotators=annotators,
        overlap_fraction=params.overlap_fraction,
        overlap_k=params.overlap_k,
        seed=sim.seed,
    )
    if not gold_tasks:
        return ordinary
    # Every annotator meets the gold tasks, so each one's accuracy is measured.
    gold = answer(
        [t for t in tasks if t["id"] in gold_tasks],
        annotators=annotators,
        overlap_fraction=1.0,
        overlap_k=len(annotators),
        seed=sim.seed,
    )
    return {
        "annotations": ordinary["annotations"] + gold["annotations"],
        "tasks": ordinary["tasks"] + gold["tasks"],
        "per_annotator": {
            a: ordinary["per_annotator"][a] + gold["per_annotator"][a] for a in ordinary["per_annotator"]
        },
    }

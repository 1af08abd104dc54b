"""Deployments: scheduled ingest, on-demand label rounds and releases, training triggered by new releases."""

from __future__ import annotations

from prefect.events import DeploymentEventTrigger

from corpus.settings import Settings
from pipelines.config import CrawlParams, IngestParams
from pipelines.flows import ingest_flow, label_round_flow, release_flow, train_flow, train_on_release_flow
from pipelines.tasks import DATASET_RELEASED

TRAIN_ON_RELEASE = "train-on-release"


def release_trigger() -> DeploymentEventTrigger:
    """Start training when any dataset publishes a release; the event payload becomes the parameters."""
    return DeploymentEventTrigger(
        name="train when a dataset is released",
        expect={DATASET_RELEASED},
        match={"prefect.resource.id": "flywheel.dataset.*"},
        parameters={
            # A template that is a single expression keeps its JSON type (notes/prefect-stack.md §2e).
            "dataset": "{{ event.payload.dataset }}",
            "version": "{{ event.payload.version }}",
            "data_root": "{{ event.payload.data_root }}",
            "pool": "{{ event.payload.pool }}",
        },
    )


def build_deployments(settings: Settings, *, only: set[str] | None = None) -> list:
    """The runner deployments `flywheel serve` serves; `only` limits them by name."""
    site = f"http://127.0.0.1:{settings.site_port}/"
    deployments = {
        "ingest-nightly": lambda: ingest_flow.to_deployment(
            name="ingest-nightly",
            cron="0 3 * * *",
            parameters={"params": IngestParams(crawl=CrawlParams(start_url=site, source="sample-site")).model_dump()},
            description="crawl -> curate -> scrub of the configured source, nightly.",
            tags=["flywheel", "ingest"],
        ),
        "label-round": lambda: label_round_flow.to_deployment(
            name="label-round",
            description="Push the next batch to Label Studio and pull annotations.",
            tags=["flywheel", "labeling"],
        ),
        "release": lambda: release_flow.to_deployment(
            name="release", description="Publish the next immutable dataset release.", tags=["flywheel", "release"]
        ),
        "train": lambda: train_flow.to_deployment(
            name="train", description="Train on a release by hand.", tags=["flywheel", "training"]
        ),
        TRAIN_ON_RELEASE: lambda: train_on_release_flow.to_deployment(
            name=TRAIN_ON_RELEASE,
            triggers=[release_trigger()],
            description="Train on every new release (flywheel.dataset.released).",
            tags=["flywheel", "training"],
        ),
    }
    names = only or set(deployments)
    unknown = names - set(deployments)
    if unknown:
        raise ValueError(f"unknown deployments {sorted(unknown)}; known: {sorted(deployments)}")
    return [make() for name, make in deployments.items() if name in names]

"""The release flow: the next immutable dataset version from the pool and its aggregated labels, announced."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from prefect import flow
from prefect.artifacts import create_markdown_artifact

from corpus.exports.export import export_release
from corpus.pool import latest_pool, read_gold
from corpus.releases.build import build_release
from corpus.stages import trace_reports
from corpus.tasks import DEFAULT_TASK
from crawlers.importers.config import ImportLabelPolicy
from crawlers.importers.labels import apply_box_updates, origins_with_policy, read_box_updates
from labeling.multilabel import aggregate_multilabel, attach_label_sets, compute_label_agreement
from labeling.quality import aggregate_dawid_skene, compute_agreement
from labeling.round_state import mark_released
from labeling.round_store import list_round_numbers, load_round, save_round
from labeling.rounds import attach_labels
from labeling.sync import read_annotations
from pipelines.config import ReleaseParams
from pipelines.detect import label_box_records
from pipelines.runtime import DATASET_RELEASED, IO_RETRIES, announce, artifact_key, data_root_url, open_root, task
from training.comparison import compare_versions


def imported_votes(labeled: pa.Table) -> dict[str, int]:
    """Per import origin (`imported:<source>`), how many released records it voted on (trusted or not)."""
    counts: Counter[str] = Counter()
    for annotators in labeled.column("annotators").to_pylist():
        counts.update(a for a in set(annotators or ()) if a.startswith("imported:"))
    return dict(sorted(counts.items()))


def _now() -> datetime:
    return datetime.now(UTC)


def release_markdown(manifest: dict[str, Any]) -> str:
    """The release's artifact: rows per split, what changed since its parent, where its card is."""
    counts = manifest.get("rows", {})
    diff = manifest.get("diff") or {}
    lines = [f"# {manifest['dataset']} {manifest['version']}", "", "| split | rows |", "|---|---|"]
    lines += [f"| {split} | {n} |" for split, n in counts.items()]
    lines += [
        "",
        f"parent: {manifest.get('parent')}; added {diff.get('added')}, removed {diff.get('removed')}, "
        f"relabelled {diff.get('relabelled')}",
        f"release id: `{manifest.get('release_id')}`",
        f"card: `{manifest['path']}/card.html`",
    ]
    return "\n".join(lines)


def release_task_type(root: Any, params: ReleaseParams) -> str:
    """The task type a release carries: the config's, else its round's, else the dataset's newest round's."""
    if params.release.task:
        return params.release.task
    numbers = [params.round] if params.round else list_round_numbers(root, params.dataset)[-1:]
    return load_round(root, params.dataset, numbers[0]).task if numbers else DEFAULT_TASK


def release_label_sets(
    records: pa.Table, annotations: pa.Table, gold_path: str | None, root: Any
) -> tuple[pa.Table, dict[str, Any], list[str]]:
    """(records with their aggregated label sets, per-label agreement, no trusted origins) of a multi-label
    dataset: labeling.multilabel's per-label Dawid-Skene."""
    aggregated = aggregate_multilabel(annotations, gold=read_gold(root, gold_path))
    return attach_label_sets(records, aggregated), compute_label_agreement(annotations), []


@task(**IO_RETRIES)
def publish_release(params: ReleaseParams, data_root: str) -> dict[str, Any]:
    """Build the next immutable release from labeled pool records (Dawid-Skene labels) and announce it."""
    root = open_root(data_root)
    pool = params.pool or latest_pool(root)
    annotations = read_annotations(root)
    task_type = release_task_type(root, params)
    trusted = params.trusted_origins
    if trusted is None:
        trusted = origins_with_policy(root, ImportLabelPolicy.trusted.value)
    records = apply_box_updates(root.read_table(pool), read_box_updates(root))  # boxes edited in a re-imported source
    if task_type == "detect":
        labeled, agreement = label_box_records(root, records, params.gold_path, trusted)
    elif task_type == "multilabel":  # per-label Dawid-Skene; imported labels are single-label, so none is trusted
        labeled, agreement, trusted = release_label_sets(records, annotations, params.gold_path, root)
    else:
        aggregated = aggregate_dawid_skene(annotations, gold=read_gold(root, params.gold_path))
        labeled = attach_labels(records, aggregated, annotations=annotations, trusted_origins=trusted)
        agreement = compute_agreement(annotations)
    extra = {
        "agreement": agreement,
        "pool": pool,
        "curation": trace_reports(root, pool),
        "trusted_origins": list(trusted),
        "imported_votes": imported_votes(labeled),
    }
    # The card shows each earlier version's newest model on this release's fixed eval set.
    manifest = build_release(
        root,
        params.dataset,
        labeled,
        params.release.model_copy(update={"task": task_type}),
        extra=extra,
        eval_scorer=lambda rows: compare_versions(root, params.dataset, rows, task=task_type),
    )
    manifest = {**manifest, "path": root.uri(f"releases/{params.dataset}/{manifest['version']}")}
    if not manifest.get("unchanged"):
        payload = {"dataset": params.dataset, "version": manifest["version"], "data_root": root.url, "pool": pool}
        announce(DATASET_RELEASED, params.dataset, payload)
        if params.round:
            save_round(root, mark_released(load_round(root, params.dataset, params.round), manifest["version"], _now()))
    create_markdown_artifact(
        key=artifact_key("release", params.dataset),
        markdown=release_markdown(manifest),
        description=f"release {params.dataset} {manifest['version']}",
    )
    return manifest


@task(**IO_RETRIES)
def export_formats(dataset: str, version: str, formats: list[str], data_root: str) -> dict[str, Any]:
    """Write the release in each format under exports/<dataset>/<vN>/<format> (idempotent: a retry or a rerun
    finds the finished ones and leaves them)."""
    root = open_root(data_root)
    return {fmt: export_release(root, dataset, version, fmt)["path"] for fmt in formats}


@flow(name="release", log_prints=True)
def release_flow(params: ReleaseParams) -> dict[str, Any]:
    """Publish the next immutable release of the dataset (and write its exports); emits flywheel.dataset.released."""
    data_root = data_root_url(params.data_root)
    manifest = publish_release(params, data_root)
    if params.exports:
        written = export_formats(params.dataset, manifest["version"], params.exports, data_root)
        manifest = {**manifest, "exports": written}
    return manifest

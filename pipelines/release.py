"""The release flow: the next immutable dataset version from the pool and its aggregated labels, announced."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
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
from crawlers.importers.labels import apply_box_updates, label_kinds, origins_with_policy, read_box_updates
from labeling.multilabel import (
    aggregate_multilabel,
    apply_trusted_label_sets,
    attach_label_sets,
    compute_label_agreement,
)
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
    records: pa.Table, annotations: pa.Table, gold_path: str | None, root: Any, trusted: Sequence[str] = ()
) -> tuple[pa.Table, dict[str, Any]]:
    """(records with their label sets, per-label agreement) of a multi-label dataset: labeling.multilabel's
    per-label Dawid-Skene, then the set of a trusted origin taken as it is (apply_trusted_label_sets)."""
    aggregated = aggregate_multilabel(annotations, gold=read_gold(root, gold_path))
    labeled = attach_label_sets(records, aggregated)
    return apply_trusted_label_sets(labeled, annotations, trusted), compute_label_agreement(annotations)


def check_import_kinds(root: Any, dataset: str, task_type: str, trusted: Sequence[str]) -> None:
    """ValueError, one line naming the dataset and the task, when a trusted import gives another kind of answer
    than the release's task takes: label sets to a classify (or text) release, single labels to a multilabel
    one. A detect release reads boxes; both kinds may come with them."""
    wanted = {"multilabel": "sets", "classify": "single", "text": "single"}.get(task_type)
    for origin, kinds in label_kinds(root, trusted).items():
        other = kinds - {wanted} if wanted else set()
        if other:
            said = "label sets" if "sets" in other else "single labels"
            raise ValueError(
                f"dataset {dataset}: a {task_type} release cannot take the {said} trusted import {origin} holds; "
                f"release it with task {'multilabel' if 'sets' in other else 'classify'}, or import it untrusted"
            )


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
    check_import_kinds(root, params.dataset, task_type, trusted)
    records = apply_box_updates(root.read_table(pool), read_box_updates(root))  # boxes edited in a re-imported source
    if task_type == "detect":
        labeled, agreement = label_box_records(root, records, params.gold_path, trusted)
    elif task_type == "multilabel":  # per-label Dawid-Skene; a trusted import's label sets as they are
        labeled, agreement = release_label_sets(records, annotations, params.gold_path, root, trusted)
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

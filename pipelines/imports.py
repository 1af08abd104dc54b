"""The import flow: a team's own images, buckets, manifests and label exports into raw shards, then curate + scrub."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact

from corpus.settings import get_settings
from corpus.store import s3_storage_options
from crawlers.importers.importer import ImportProgress, ProgressFn, import_to_root
from pipelines.config import CurateParams, ImportParams
from pipelines.ingest import curate_flow
from pipelines.runtime import IO_RETRIES, artifact_key, data_root_url, new_run_name, open_root, task

# The progress callback of the import running in this process (the CLI's progress bar); a flow parameter
# could not carry it (parameters are JSON).
_progress: list[ProgressFn] = []


@contextlib.contextmanager
def reporting_progress(callback: ProgressFn) -> Iterator[None]:
    """Hand every import run in this process `callback(ImportProgress)` after each file, while inside."""
    _progress.append(callback)
    try:
        yield
    finally:
        _progress.remove(callback)


def _notify(totals: ImportProgress) -> None:
    for callback in _progress:
        callback(totals)


def import_table(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The import report as {"figure", "value"} rows for a table artifact."""
    rows = [{"figure": k, "value": report[k]} for k in ("kind", "files", "bytes", "records", "unchanged", "labels")]
    rows.append({"figure": "labels_changed", "value": report.get("labels_changed", 0)})
    rows += [{"figure": f"dropped/{k}", "value": v} for k, v in report["dropped_by_reason"].items()]
    rows += [{"figure": f"skipped/{k}", "value": v} for k, v in report["skipped"].items()]
    return rows


@task(**IO_RETRIES)
def import_source(params: ImportParams, data_root: str, import_run: str) -> dict[str, Any]:
    """Import the source into raw/<import_run>/ (nothing when nothing is new); an s3:// source is read with the
    data root's s3 settings. A retry writes the same shards again (their names and contents do not change)."""
    settings = get_settings()
    report = import_to_root(
        open_root(data_root),
        params.source,
        import_run=import_run,
        work_dir=settings.work_dir,
        storage_options=s3_storage_options(settings) if params.source.source.startswith(("s3://", "s3a://")) else None,
        progress=_notify if _progress else None,
    )
    create_table_artifact(
        key=artifact_key("import", params.source.source_name),
        table=import_table(report),
        description=f"import {import_run}: {report['records']} new, {report['unchanged']} unchanged "
        f"({report['labels_changed']} with changed labels), {report['dropped']} dropped",
    )
    return report


@flow(name="import", log_prints=True)
def import_flow(params: ImportParams) -> dict[str, Any]:
    """Import a folder, ImageFolder tree, s3:// prefix, manifest, Label Studio export, COCO file or Hugging Face
    Parquet folder, then curate and scrub the new records into the pool as a crawl's are. Re-importing the same
    source adds nothing: no raw folder, no curate run, the pool pointer untouched; labels or boxes edited in the
    source for files imported before become a new version of their imported labels (no new row), which the next
    release uses (`labels_changed` in the report)."""
    data_root = data_root_url(params.data_root)
    # Two imports within one second must not share a raw folder: the run name's clock has seconds only.
    import_run = f"{new_run_name(f'import-{params.source.source_name}')}-{uuid.uuid4().hex[:6]}"
    report = import_source(params, data_root, import_run)
    if report["output"] is None:
        changed = f", {report['labels_changed']} of them with changed labels" if report["labels_changed"] else ""
        print(f"import of {params.source.source}: nothing new ({report['unchanged']} unchanged{changed})")
        return {"import": report, "curate": None, "scrub": None, "pool": None}
    curate_params = CurateParams(
        inputs=[report["output"]],
        curate=params.curate,
        scrub=params.scrub,
        scale=params.scale,
        data_root=params.data_root,
    )
    return {"import": report, **curate_flow(curate_params)}

"""`flywheel import SOURCE`: a folder, ImageFolder tree, s3:// prefix, manifest or label export into the pool."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from pipelines.cli_support import console, prefect_api, print_json, print_progress

SOURCE_HELP = (
    "Folder, ImageFolder tree, s3://bucket/prefix, .csv/.jsonl/.parquet manifest, Label Studio .json export, "
    "COCO .json, YOLO folder or Hugging Face Parquet folder."
)


def _progress_bar() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]import[/]"),
        BarColumn(bar_width=None, pulse_style="cyan"),
        TextColumn("{task.fields[files]:,} files  {task.fields[mb]:,.1f} MB  {task.fields[drops]:,} dropped"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _summary(report: dict) -> dict:
    imported = report["import"]
    keys = ("kind", "files", "records", "unchanged", "labels", "labels_changed", "dropped_by_reason", "output")
    out = {"pool": report.get("pool"), "import": {k: imported.get(k) for k in keys}}
    for stage in ("curate", "scrub"):
        if report.get(stage):
            out[stage] = {k: report[stage].get(k) for k in ("kept", "dropped", "dropped_by_reason")}
    return out


def import_command(
    source: Annotated[str, typer.Argument(help=SOURCE_HELP)],
    name: Annotated[str | None, typer.Option(help="Source name on records; default: the path's last part.")] = None,
    kind: Annotated[
        str, typer.Option(help="auto, folder, imagefolder, manifest, label-studio, coco, yolo or hf.")
    ] = "auto",
    labels: Annotated[
        str, typer.Option(help="How imported labels are used: preannotate, annotator or trusted.")
    ] = "preannotate",
    media_root: Annotated[str | None, typer.Option(help="Where relative paths in a manifest start.")] = None,
    allow_private_host: Annotated[
        list[str] | None,
        typer.Option(help="An origin (http://127.0.0.1:8765) on a private address manifest URLs may reach."),
    ] = None,
    shards: Annotated[
        int | None,
        typer.Option(help="Curation shards, each its own task. Default: sized from the input, one after another."),
    ] = None,
) -> None:
    """Import your own images (and their labels) and curate + scrub them into the label pool, as a crawl's are."""
    from crawlers.importers.config import ImportConfig
    from crawlers.importers.sources import ImportSourceError, check_source
    from pipelines.config import ImportParams, ScaleParams
    from pipelines.imports import import_flow, reporting_progress
    from pipelines.progress import reporting_shards

    config = ImportConfig(
        source=source,
        name=name,
        kind=kind,
        label_policy=labels,
        media_root=media_root,
        allowed_private_hosts=allow_private_host,
    )
    try:
        if not source.startswith(("s3://", "s3a://")):  # an s3 source is checked with the root's settings
            check_source(config)
    except ImportSourceError as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    params = ImportParams(source=config, scale=ScaleParams(shards=shards))
    with prefect_api(), _progress_bar() as bar:
        task = bar.add_task("import", total=None, files=0, mb=0.0, drops=0)

        def show(totals) -> None:
            bar.update(task, files=totals.files, mb=totals.bytes / 1e6, drops=totals.drops)

        with reporting_progress(show), reporting_shards(print_progress):
            report = import_flow(params)
    for refused in report["import"].get("refused") or []:
        if refused.get("detail"):  # a malformed annotation: which file, which annotation, what is wrong
            console.print(f"[yellow]refused:[/] {refused['detail']}", highlight=False, soft_wrap=True)
    print_json(_summary(report))

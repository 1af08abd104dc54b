"""`flywheel export ...` and `flywheel releases list|show|diff`: take a release to a trainer, look at releases."""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer

from pipelines.cli_support import FlywheelTyper, console, print_json

releases_app = FlywheelTyper(help="Dataset releases: list versions, show one, diff two.", no_args_is_help=True)

_DataRoot = Annotated[str | None, typer.Option("--data-root", help="Data root URL; default FLYWHEEL_DATA_ROOT.")]


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/] {' '.join(message.split())}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


def _open(data_root: str | None):
    from corpus.store import open_data_root

    return open_data_root(data_root)


def resolve_ref(root, ref: str) -> tuple[str, str]:
    """(dataset, existing version) of a reference DATASET@vN / DATASET@N / DATASET@latest / DATASET (v9 is
    v0009); ValueError for a malformed one, FileNotFoundError (listing the versions) for an unknown dataset or
    version."""
    from corpus.releases.versions import VERSION_RE, dataset_folder, parse_release_ref, resolve_version

    dataset, version = parse_release_ref(ref)
    dataset_folder(dataset)  # raises ValueError for a name that is no folder name
    short = re.fullmatch(r"v(\d{1,3})", version)
    version = f"v{int(short.group(1)):04d}" if short else version  # v9 means v0009
    if version != "latest" and not VERSION_RE.match(version):
        raise ValueError(f"bad release reference {ref!r}: expected DATASET@VERSION, e.g. demo@v0002 or demo@latest")
    return dataset, resolve_version(root, dataset, version)


def _resolve_or_exit(root, ref: str) -> tuple[str, str]:
    try:
        return resolve_ref(root, ref)
    except (ValueError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None


def export_command(
    ref: Annotated[str, typer.Argument(help="DATASET@VERSION, e.g. demo@v0002 or demo@latest.")],
    fmt: Annotated[
        str, typer.Option("--format", help="imagefolder, hf, webdataset, csv; coco or yolo for a release with boxes.")
    ],
    to: Annotated[
        str | None, typer.Option("--to", help="Folder or URL (s3://...); default exports/DATASET/vN/FORMAT.")
    ] = None,
    shard_mb: Annotated[int, typer.Option(help="Largest webdataset shard, in MiB.")] = 256,
    data_root: _DataRoot = None,
) -> None:
    """Export a verified release in FORMAT to a folder or URL (idempotent; export.json lists every file)."""
    from corpus.exports.export import EXPORT_FORMATS, ExportError, export_release

    if fmt not in EXPORT_FORMATS:
        raise _fail(f"unknown format {fmt!r}; formats: {', '.join(EXPORT_FORMATS)}")
    root = _open(data_root)
    dataset, version = _resolve_or_exit(root, ref)
    try:
        out = export_release(root, dataset, version, fmt, to, shard_bytes=shard_mb * 1024 * 1024)
    except (ValueError, ExportError) as exc:  # a release that cannot be written in fmt, a folder holding another
        raise _fail(str(exc)) from None
    keys = ("format", "dataset", "version", "release_id", "splits", "skipped", "path", "unchanged")
    print_json({**{k: out.get(k) for k in keys}, "files": len(out["files"])})


def _summary(manifest: dict[str, Any]) -> dict[str, Any]:
    keys = ("dataset", "version", "parent", "created_at", "release_id", "rows", "labels", "licence", "description")
    return {**{k: manifest.get(k) for k in keys}, "sources": manifest.get("sources"), "diff": _counts(manifest)}


def _counts(manifest: dict[str, Any]) -> dict[str, Any]:
    diff = manifest.get("diff") or {}
    return {k: diff.get(k) for k in ("added", "removed", "relabelled", "moved")}


@releases_app.command("list")
def releases_list(dataset: str, data_root: _DataRoot = None) -> None:
    """The versions of DATASET with their rows and creation time (from each manifest)."""
    from corpus.releases.versions import dataset_folder, list_releases

    root = _open(data_root)
    try:
        folder = dataset_folder(dataset)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    versions = list_releases(root, dataset)
    if not versions:
        raise _fail(f"dataset {dataset!r} has no releases under {root.uri(folder)}")
    rows = []
    for version in versions:
        manifest = root.read_json(f"{folder}/{version}/manifest.json")
        rows.append({"version": version, "rows": sum(manifest.get("rows", {}).values()), **_created(manifest)})
    print_json(rows)


def _created(manifest: dict[str, Any]) -> dict[str, Any]:
    return {"created_at": manifest.get("created_at"), "parent": manifest.get("parent")}


@releases_app.command("show")
def releases_show(ref: str, data_root: _DataRoot = None) -> None:
    """A release's manifest summary (verified: digest, signature with a key, every file's SHA-256)."""
    from corpus.releases.versions import load_release

    root = _open(data_root)
    dataset, version = _resolve_or_exit(root, ref)
    print_json(_summary(load_release(root, dataset, version).manifest))


@releases_app.command("diff")
def releases_diff(old: str, new: str, data_root: _DataRoot = None) -> None:
    """What changed from release OLD to release NEW (records added, removed, relabelled, moved between splits)."""
    import pyarrow as pa

    from corpus.releases.summaries import compute_diff
    from corpus.releases.versions import load_release

    root = _open(data_root)
    refs = [_resolve_or_exit(root, ref) for ref in (old, new)]
    tables = []
    for dataset, version in refs:
        release = load_release(root, dataset, version)
        tables.append(pa.concat_tables([release.train, release.val, release.test]))
    diff = compute_diff(tables[1], tables[0])
    print_json({"old": "@".join(refs[0]), "new": "@".join(refs[1]), **diff})

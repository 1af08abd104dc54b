"""`flywheel status`: where the data is and how far the loop has come, from any directory, changing nothing."""

from __future__ import annotations

import contextlib
import os
from typing import Annotated, Any

import typer
from rich.table import Table

from pipelines.cli_support import console, print_json


def _local_missing(url: str) -> bool:
    return "://" not in url and not os.path.isdir(url)


def _datasets(root: Any) -> dict[str, dict[str, Any]]:
    """Per dataset (any that has rounds or releases): its open round, newest release and newest model."""
    from corpus.releases.versions import list_releases
    from labeling.round_store import list_datasets, load_open_round
    from training.registry import latest_model

    names = sorted(set(list_datasets(root)) | {n for n in root.list_dirs("releases") if not n.startswith(".")})
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        opened = load_open_round(root, name)
        releases = list_releases(root, name)
        out[name] = {
            "open_round": None
            if opened is None
            else {"number": opened.number, "status": opened.status, "deadline": opened.deadline},
            "newest_release": releases[-1] if releases else None,
            "releases": len(releases),
            "newest_model": latest_model(root, name),
        }
    return out


def _services(settings: Any) -> dict[str, dict[str, Any]]:
    from pipelines.demo import services

    shown = {}
    for name, info in services.describe(settings).items():
        shown[name] = {**info, "up": info["pid"] is not None}
    return shown


def gather_status(data_root: str | None = None) -> dict[str, Any]:
    """The data root, the latest pool, each dataset's open round / newest release / newest model, the newest
    model of all, and which local services run. A local data root that does not exist is reported, not made."""
    from corpus.pool import NoPoolError, latest_pool
    from corpus.settings import get_settings
    from corpus.store import open_data_root
    from training.registry import latest_model

    settings = get_settings()
    url = str(data_root or settings.data_root)
    status: dict[str, Any] = {
        "data_root": os.path.abspath(url) if "://" not in url else url,
        "exists": not _local_missing(url),
        "pool": None,
        "datasets": {},
        "newest_model": None,
    }
    if status["exists"]:
        root = open_data_root(url, settings)
        with contextlib.suppress(NoPoolError):
            status["pool"] = latest_pool(root)
        status["datasets"] = _datasets(root)
        status["newest_model"] = latest_model(root)
    status["services"] = _services(settings)
    return status


def _table(status: dict[str, Any]) -> Table:
    table = Table(title="Flywheel", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("data root", status["data_root"] + ("" if status["exists"] else "  [red](does not exist)[/]"))
    table.add_row("pool", status["pool"] or "none")
    for name, info in status["datasets"].items():
        opened = info["open_round"]
        round_text = "none"
        if opened is not None:
            round_text = f"#{opened['number']} {opened['status']} (until {opened['deadline']})"
        table.add_row(f"{name}: open round", round_text)
        table.add_row(f"{name}: newest release", f"{info['newest_release'] or 'none'} ({info['releases']} in all)")
        table.add_row(f"{name}: newest model", info["newest_model"] or "none")
    if not status["datasets"]:
        table.add_row("datasets", "none (no rounds, no releases)")
    table.add_row("newest model", status["newest_model"] or "none")
    for name, info in status["services"].items():
        where = f" at {info['url']}" if info.get("url") else ""
        state = f"[green]up[/] (pid {info['pid']}){where}" if info["up"] else "[dim]down[/]"
        table.add_row(f"service {name}", state)
    return table


def status_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
    data_root: Annotated[
        str | None, typer.Option("--data-root", help="Data root URL; default FLYWHEEL_DATA_ROOT.")
    ] = None,
) -> None:
    """Where Flywheel stands: the data root, the latest pool, each dataset's open round, newest release and model,
    and whether each local service is up. Works from any directory (settings from the environment and .env)."""
    status = gather_status(data_root)
    if as_json:
        print_json(status)
    else:
        console.print(_table(status))

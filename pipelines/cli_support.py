"""What every `flywheel` command shares: the console, JSON output, and which Prefect server runs its flows."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator

from rich.console import Console

from corpus.settings import get_settings

console = Console()


@contextlib.contextmanager
def prefect_api(start: bool = False) -> Iterator[str | None]:
    """Run flows against Flywheel's own local Prefect server (started when `start`), so they show in the UI.

    An explicit PREFECT_API_URL wins. Otherwise a server is used only if Flywheel started it (its pid file);
    one that some other program runs on the port is never taken: Prefect then runs a temporary server for
    this command, stopped when the command ends, also on SIGTERM.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from pipelines.demo import services

    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    settings = get_settings()
    api = services.start_prefect_server(settings) if start else services.own_prefect_api(settings)
    if api is None:
        yield None
        return
    with temporary_settings(updates={PREFECT_API_URL: api}):
        yield api


def print_json(obj: object) -> None:
    console.print_json(json.dumps(obj, default=str))

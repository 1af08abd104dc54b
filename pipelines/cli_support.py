"""What every `flywheel` command shares: the console, JSON output, one-line failures, plain help, and which Prefect
server runs its flows."""

from __future__ import annotations

import contextlib
import inspect
import json
import os
from collections.abc import Iterator
from typing import Any, get_args, get_origin

import typer
from rich.console import Console
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from corpus.settings import get_settings

console = Console()
# Progress lines of a command whose stdout is JSON go here, so the JSON stays parseable.
stderr_console = Console(stderr=True)


def print_progress(line: str, as_json: bool = False) -> None:
    """One line of a long step's progress: above the console's live status, or on stderr beside JSON output."""
    (stderr_console if as_json else console).print(line, highlight=False, soft_wrap=True)


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


def fail(message: str, code: int = 2) -> typer.Exit:
    """An exit (to raise) after one red line: `message` with its whitespace folded. 2 = the input is wrong."""
    console.print(f"[red]error:[/] {' '.join(message.split())}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


# Help shows click's plain value names (TEXT, INTEGER) where typer would print <str>, <list[str]> or <bool>.
_PLAIN_NAMES = {str: "TEXT", int: "INTEGER", float: "FLOAT", bool: "BOOLEAN"}


def _plain_type(param: Any) -> str | None:
    if isinstance(param, TyperOption) and (param.is_flag or param.count):
        return None  # a flag takes no value
    desc = param.type_descriptor
    if desc.is_choice:
        return "|".join(str(getattr(c, "value", c)) for c in desc.choices or ())
    if desc.is_path:
        return "PATH"
    annotation = desc.annotation
    if get_origin(annotation) is list:
        annotation = (get_args(annotation) or (str,))[0]
    return _PLAIN_NAMES.get(annotation) or getattr(annotation, "__name__", "value").upper()


class _PlainOption(TyperOption):
    def display_type_rich(self, ctx: Any) -> str | None:
        return self.metavar if self.metavar is not None else _plain_type(self)


class _PlainArgument(TyperArgument):
    def display_type_rich(self, ctx: Any) -> str | None:
        return _plain_type(self)


def _plain_params(params: list[Any]) -> list[Any]:
    for param in params:
        if type(param) is TyperOption:
            param.__class__ = _PlainOption
        elif type(param) is TyperArgument:
            param.__class__ = _PlainArgument
            if param.metavar is None:
                param.metavar = (param.name or "").upper() + ("..." if param.nargs != 1 else "")
    return params


def unwrap_help(text: str | None) -> str | None:
    """Help text with the line breaks of a wrapped docstring removed inside each paragraph (rich help keeps them)."""
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else " ".join(p.split()) for p in paragraphs)


class PlainCommand(TyperCommand):
    """A command whose help names value types as click does (TEXT, INTEGER), and flags without a type."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = unwrap_help(self.help)

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_params(super().get_params(ctx))


class PlainGroup(TyperGroup):
    """A command group whose options, and whose commands' options, show plain types in help."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_params(super().get_params(ctx))


class FlywheelTyper(typer.Typer):
    """typer.Typer whose commands and groups are PlainCommand / PlainGroup unless told otherwise."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", PlainGroup)
        super().__init__(**kwargs)

    def command(self, name: str | None = None, *, cls: type[TyperCommand] | None = None, **kwargs: Any):
        return super().command(name, cls=cls or PlainCommand, **kwargs)

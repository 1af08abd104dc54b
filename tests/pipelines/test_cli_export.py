"""Tests for `flywheel export` and `flywheel releases ...`, on a Typer app that registers them as cli.py would."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "corpus"))
from test_releases import make_records

from corpus.releases.build import build_release
from corpus.releases.config import ReleaseConfig
from corpus.store import DataRoot
from pipelines.cli_export import export_command, releases_app

app = typer.Typer()
app.command("export")(export_command)
app.add_typer(releases_app, name="releases")


def _root(tmp_path) -> DataRoot:
    root = DataRoot(str(tmp_path / "root"))
    build_release(root, "animals", make_records(30, seed=1), ReleaseConfig())
    build_release(root, "animals", make_records(40, seed=1), ReleaseConfig())
    return root


def test_export_and_releases_commands(tmp_path):
    root = _root(tmp_path)
    runner = CliRunner()
    base = ["--data-root", root.url]
    out = runner.invoke(
        app, ["export", "animals@v0002", "--format", "imagefolder", "--to", str(tmp_path / "if"), *base]
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["splits"]["train"] > 0 and (tmp_path / "if" / "export.json").exists()
    again = runner.invoke(app, ["export", "animals@2", "--format", "imagefolder", "--to", str(tmp_path / "if"), *base])
    assert json.loads(again.output)["unchanged"] is True
    listed = json.loads(runner.invoke(app, ["releases", "list", "animals", *base]).output)
    assert [r["version"] for r in listed] == ["v0001", "v0002"] and listed[1]["rows"] == 40
    shown = json.loads(runner.invoke(app, ["releases", "show", "animals@latest", *base]).output)
    assert shown["version"] == "v0002" and shown["labels"] == ["bird", "cat", "dog"]
    diff = json.loads(runner.invoke(app, ["releases", "diff", "animals@v0001", "animals@v0002", *base]).output)
    assert diff["added"] == 10 and diff["removed"] == 0


def test_a_bad_reference_fails_in_one_line(tmp_path):
    root = _root(tmp_path)
    runner = CliRunner()
    for ref, needle in [("demo@@x", "bad release reference"), ("zebras@v0001", "no releases"), ("animals@v9", "v0002")]:
        out = runner.invoke(app, ["export", ref, "--format", "hf", "--data-root", root.url])
        assert out.exit_code == 2 and needle in out.output and len(out.output.strip().splitlines()) == 1, out.output
    out = runner.invoke(app, ["export", "animals@v0001", "--format", "tiff", "--data-root", root.url])
    assert out.exit_code == 2 and "unknown format" in out.output
    assert not (tmp_path / "root" / "exports").exists()

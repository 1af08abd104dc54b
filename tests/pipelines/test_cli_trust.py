"""The command line a user trusts: plain help, inputs checked before any flow, one-line reasons, `flywheel status`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from corpus.pool import remember_pool
from corpus.store import DataRoot
from labeling.round_state import LabelRound
from labeling.round_store import claim_round, save_round
from pipelines.cli import app
from pipelines.demo.label_studio_server import find_free_port

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))
from test_cli import FLYWHEEL, _env  # noqa: E402


def _run(tmp_path: Path, *args: str, cwd: Path | None = None, timeout: int = 120, **env: str):
    return subprocess.run(
        [*FLYWHEEL, *args],
        cwd=cwd or tmp_path,
        env={**_env(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _lines(run: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]


def _command_paths(command: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, sub in (getattr(command, "commands", None) or {}).items():
        found += _command_paths(sub, (*path, name))
    return found


def test_no_help_shows_typer_s_angle_bracket_types():
    paths = _command_paths(typer.main.get_command(app))
    assert ("train",) in paths and ("label", "push") in paths and ("status",) in paths
    runner = CliRunner()
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], terminal_width=120)
        assert result.exit_code == 0, (path, result.output)
        for bracketed in ("<bool>", "<list[", "<str>", "<int>", "<float>"):
            assert bracketed not in result.output, (path, bracketed, result.output)


def test_train_and_release_help_say_what_goes_in_and_out_and_expose_their_settings(tmp_path):
    train = _run(tmp_path, "train", "--help")
    for needle in ("In: release", "Out: models/", "--image-size", "--lr", "--batch-size", "INTEGER", "FLOAT"):
        assert needle in train.stdout, needle
    assert "<bool>" not in train.stdout and "<" + "int>" not in train.stdout
    release = _run(tmp_path, "release", "--help")
    for needle in ("In: the label pool", "Out: releases/DATASET/vNNNN/", "--train", "--val", "--test", "--trusted"):
        assert needle in release.stdout, needle


def test_a_bad_release_reference_is_refused_at_once_in_one_line(tmp_path):
    started = time.monotonic()
    missing = _run(tmp_path, "train", "--release", "nosuch@v9")
    assert time.monotonic() - started < 30
    assert missing.returncode == 2
    assert len(_lines(missing)) == 1 and "dataset 'nosuch' has no releases" in _lines(missing)[0]
    malformed = _run(tmp_path, "train", "--release", "demo@@x")
    assert malformed.returncode == 2
    assert len(_lines(malformed)) == 1 and "bad release reference 'demo@@x'" in _lines(malformed)[0]
    (tmp_path / "data/releases/demo/v0001").mkdir(parents=True)
    unknown = _run(tmp_path, "train", "--release", "demo@v9")
    assert unknown.returncode == 2 and "demo/v0009 does not exist; versions: v0001" in _lines(unknown)[0]
    bad_lr = _run(tmp_path, "train", "--release", "demo@latest", "--lr", "0", "--batch-size", "0")
    assert bad_lr.returncode == 2 and len(_lines(bad_lr)) == 1
    assert "--lr Input should be greater than 0" in _lines(bad_lr)[0] and "--batch-size" in _lines(bad_lr)[0]


def test_release_checks_its_split_and_dataset_before_any_flow(tmp_path):
    ratios = _run(tmp_path, "release", "--train", "0.5", "--val", "0.2", "--test", "0.2")
    assert ratios.returncode == 2 and len(_lines(ratios)) == 1
    assert "train + val + test must be 1, got 0.9000" in _lines(ratios)[0]
    name = _run(tmp_path, "release", "--dataset", "a/b")
    assert name.returncode == 2 and "bad dataset name 'a/b'" in _lines(name)[0]


def _round(number: int) -> LabelRound:
    return LabelRound(
        dataset="demo",
        number=number,
        project_id=1,
        opened_at="2026-01-01T00:00:00+00:00",
        deadline="2026-01-04T00:00:00+00:00",
        pool="curated/x/kept",
        labels=["cat", "dog"],
        strategy="diversity",
        model_version=None,
        record_ids=[],
        gold=[],
        overlap={},
        params={},
    )


def test_status_from_any_directory_names_the_root_pool_round_release_model_and_services(tmp_path):
    root = DataRoot(str(tmp_path / "data"))
    remember_pool(root, "curated/scrub-1/kept")
    for version in ("v0001", "v0002"):
        (tmp_path / "data/releases/demo" / version).mkdir(parents=True)
    root.write_json("models/demo-v0002-m1/metrics.json", {"dataset": "demo", "created_at": "2026-01-02T00:00:00"})
    save_round(root, _round(claim_round(root, "demo")))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shown = _run(tmp_path, "status", "--json", cwd=elsewhere)
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status["data_root"] == str(tmp_path / "data") and status["exists"]
    assert status["pool"] == "curated/scrub-1/kept"
    demo = status["datasets"]["demo"]
    assert demo["open_round"]["number"] == 1 and demo["open_round"]["status"] == "opened"
    assert (demo["newest_release"], demo["releases"], demo["newest_model"]) == ("v0002", 2, "demo-v0002-m1")
    assert status["newest_model"] == "demo-v0002-m1"
    assert set(status["services"]) >= {"label-studio", "prefect-server", "sample-site"}
    assert not any(s["up"] for s in status["services"].values())
    table = _run(tmp_path, "status", cwd=elsewhere)
    assert table.returncode == 0
    for needle in ("data root", "curated/scrub-1/kept", "demo: open round", "#1 opened", "v0002", "down"):
        assert needle in table.stdout, needle
    assert not (elsewhere / "data").exists()


def test_status_of_a_data_root_that_does_not_exist_says_so_and_creates_nothing(tmp_path):
    shown = _run(tmp_path, "status", "--json", FLYWHEEL_DATA_ROOT=str(tmp_path / "nowhere"))
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert (status["exists"], status["pool"], status["datasets"], status["newest_model"]) == (False, None, {}, None)
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.prefect
def test_a_crawl_that_fetched_nothing_exits_1_and_says_why(tmp_path, prefect_api):
    refused = _run(tmp_path, "crawl", "http://127.0.0.1:9/", timeout=300, PREFECT_API_URL=prefect_api)
    errors = [line for line in _lines(refused) if "error:" in line]
    assert refused.returncode == 1 and len(errors) == 1, refused.stdout + refused.stderr
    assert "crawl fetched nothing: the SSRF guard refused http://127.0.0.1:9/ (loopback)" in errors[0]
    assert "crawl: 0 pages, 0 images" in refused.stdout and "guard 1 (loopback 1)" in refused.stdout
    url = f"http://127.0.0.1:{find_free_port()}/"  # nothing listens there
    silent = _run(tmp_path, "crawl", url, "--allow-private-host", "127.0.0.1", timeout=300, PREFECT_API_URL=prefect_api)
    errors = [line for line in _lines(silent) if "error:" in line]
    assert silent.returncode == 1 and len(errors) == 1, silent.stdout + silent.stderr
    assert f"the host of {url} did not answer (connection/refused" in errors[0]


@pytest.mark.prefect
def test_a_crawl_shows_its_progress_on_stderr_ending_at_the_summary(tmp_path, prefect_api):
    from pipelines.demo.sample_site import generate_site
    from pipelines.demo.site_server import SiteServer

    generate_site(tmp_path / "gen", seed=5, images_per_class=4)
    with SiteServer(tmp_path / "gen" / "site") as server:
        run = _run(
            tmp_path, "crawl", server.url + "/index.html", "--allow-private-host", server.url, "--json",
            timeout=300, PREFECT_API_URL=prefect_api,
        )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout)
    shown = [line[line.index("crawl: ") :] for line in run.stderr.splitlines() if "crawl: " in line]
    assert shown, run.stderr
    pages = [int(line.split()[1]) for line in shown]
    assert pages == sorted(pages)
    assert shown[-1].startswith(f"crawl: {report['pages']} pages, {report['images']} images, ")

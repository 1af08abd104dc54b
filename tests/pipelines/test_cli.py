"""The command line a user trusts: one-line errors with a non-zero exit, and no server left behind by a SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
FLYWHEEL = [sys.executable, "-m", "pipelines.cli"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FLYWHEEL_"))}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        FLYWHEEL_DATA_ROOT=str(tmp_path / "data"),
        FLYWHEEL_WORK_DIR=str(tmp_path / "work"),
        NO_ALBUMENTATIONS_UPDATE="1",
        PYTHONPATH=str(REPO),
        **extra,
    )
    return env


def test_an_error_is_one_line_and_a_non_zero_exit_and_debug_shows_the_traceback(tmp_path) -> None:
    run = subprocess.run(
        [*FLYWHEEL, "release", "--dataset", "demo"],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    lines = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "NoPoolError: no label pool under" in lines[0], lines
    debug = subprocess.run(
        [*FLYWHEEL, "--debug", "release", "--dataset", "demo"],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "NoPoolError" in debug.stderr


def _prefect_servers(parent: psutil.Process) -> list[psutil.Process]:
    found = []
    for child in parent.children(recursive=True):
        try:
            if "uvicorn" in " ".join(child.cmdline()) or "prefect" in " ".join(child.cmdline()[1:3]):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.mark.prefect
def test_sigterm_stops_the_temporary_prefect_server_the_command_started(tmp_path) -> None:
    # A Label Studio "server" that accepts connections and never answers keeps the flow busy until the kill.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        proc = subprocess.Popen(
            [*FLYWHEEL, "label", "pull", "--project", "nobody's project"],
            cwd=tmp_path,
            env=_env(tmp_path, FLYWHEEL_LABEL_STUDIO_URL=url),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        cli = psutil.Process(proc.pid)
        deadline = time.monotonic() + 180
        servers: list[psutil.Process] = []
        while time.monotonic() < deadline and proc.poll() is None:
            servers = _prefect_servers(cli)
            ports = [c.laddr.port for s in servers for c in s.net_connections("tcp") if c.status == "LISTEN"]
            if any(_answers(port) for port in ports):
                break
            time.sleep(1)
        assert servers and proc.poll() is None, "the command never started its temporary Prefect server"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) != 0
        _gone, alive = psutil.wait_procs(servers, timeout=30)
        assert not alive, f"left running after SIGTERM: {[p.pid for p in alive]}"


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.labelstudio
def test_a_wrong_label_studio_token_fails_at_once_in_one_line(tmp_path, label_studio, prefect_api) -> None:
    run = subprocess.run(
        [*FLYWHEEL, "label", "pull", "--project", "any project"],
        cwd=tmp_path,
        env=_env(
            tmp_path,
            PREFECT_API_URL=prefect_api,
            FLYWHEEL_LABEL_STUDIO_URL=label_studio.url,
            FLYWHEEL_LABEL_STUDIO_TOKEN="not-the-token-0000",
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in (run.stdout + run.stderr).splitlines() if line.strip() and "error:" in line]
    assert run.returncode == 1 and len(lines) == 1
    assert "status 401, try 1)" in lines[0]  # a 401 cannot heal: no retry, at the client or in Prefect
    assert "not-the-token-0000" not in run.stdout + run.stderr


@pytest.mark.parametrize("task", ["segment", "Classify", ""])
def test_demo_refuses_a_task_type_it_does_not_run(tmp_path, task) -> None:
    from pipelines.demo.flow import DEMO_TASKS

    run = subprocess.run(
        [*FLYWHEEL, "demo", "--task", task], cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True
    )
    assert run.returncode != 0
    said = " ".join((run.stdout + run.stderr).replace("│", " ").split())  # rich wraps the error in a box
    assert f"--task {task!r}: the demo runs {', '.join(DEMO_TASKS)}" in said

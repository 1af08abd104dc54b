"""A real Prefect server for the pipeline tests (the event trigger needs the server's automations)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pipelines.demo.label_studio_server import find_free_port


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`prefect server start` on a free loopback port with its own PREFECT_HOME; flows in this process use it."""
    from prefect.settings import PREFECT_API_URL, PREFECT_LOGGING_TO_API_ENABLED, temporary_settings

    home = tmp_path_factory.mktemp("prefect-home")
    port = find_free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    log = open(home / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
    prefect = Path(sys.executable).with_name("prefect")
    proc = subprocess.Popen(
        [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while True:
        try:
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"Prefect server did not start: {(home / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)
    os.environ["PREFECT_API_URL"] = api
    try:
        # Logs stay local: shipping them to a server that the fixture stops first only adds noise at exit.
        with temporary_settings(updates={PREFECT_API_URL: api, PREFECT_LOGGING_TO_API_ENABLED: False}):
            yield api
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture()
def label_check_every_s() -> int | None:
    """The scheduled label-check's interval for `turning_flywheel` (FLYWHEEL_LABEL_CHECK_EVERY_S); None keeps
    deploy/prefect.yaml's cron. A test parametrizes this fixture's name to change it."""
    return None


@pytest.fixture()
def turning_flywheel(prefect_api, tmp_path, label_check_every_s):
    """deploy/prefect.yaml registered on the test's Prefect server, the webhook bridge and a worker running,
    as `flywheel ui` leaves them: the automations turn the loop. Request it after the fixtures that set the
    FLYWHEEL_* environment, which the worker inherits."""
    from corpus.settings import Settings, get_settings
    from pipelines.demo import services

    settings = Settings(
        data_root=str(tmp_path / "services"),
        project_dir=Path(__file__).resolve().parents[2],
        bridge_port=find_free_port(),
        label_check_every_s=label_check_every_s,
        _env_file=None,
    )
    bridge = services.start_flywheel(settings, prefect_api, env={"NO_ALBUMENTATIONS_UPDATE": "1"})
    get_settings.cache_clear()
    try:
        yield bridge
    finally:
        run_dir = services.run_dir_of(settings)
        for name in ("worker", "webhook-bridge"):
            services.stop_service(services.ServiceState(name, run_dir))
        os.environ.pop("FLYWHEEL_WEBHOOK_URL", None)
        get_settings.cache_clear()


@pytest.fixture()
def studio(prefect_api, own_label_studio, monkeypatch):
    """A Label Studio server of the test's own, with FLYWHEEL_* pointing flows (and a worker) at it and at its
    document root as the data root."""
    from corpus.settings import get_settings

    monkeypatch.setenv("FLYWHEEL_LABEL_STUDIO_URL", own_label_studio.url)
    monkeypatch.setenv("FLYWHEEL_LABEL_STUDIO_TOKEN", own_label_studio.token)
    monkeypatch.setenv("FLYWHEEL_DATA_ROOT", str(own_label_studio.document_root))
    get_settings.cache_clear()
    yield own_label_studio
    get_settings.cache_clear()

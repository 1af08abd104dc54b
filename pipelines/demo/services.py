"""Local services for the demo and the UI: Label Studio, the sample site and a Prefect server, as detached processes."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from corpus.settings import Settings
from pipelines.demo.label_studio_server import LabelStudioError, LabelStudioServer, ensure_template, stop_pid_file
from pipelines.demo.sample_objects import OBJECT_CLASSES, generate_object_site
from pipelines.demo.sample_site import generate_site

SITE_DIR = "demo/sample-site"


@dataclass
class ServiceState:
    """Where a service's pid file and log live: under <data root>/run/."""

    name: str
    run_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid


def _local_root(settings: Settings) -> Path:
    """Where the local services keep their state: the data root, or the work dir when the data root is
    object storage (Label Studio's SQLite, pid files and logs need a disk)."""
    if "://" in settings.data_root:
        return (settings.work_dir / "services").absolute()
    return Path(settings.data_root).absolute()


def run_dir_of(settings: Settings) -> Path:
    path = _local_root(settings) / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def is_answering(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def spawn(state: ServiceState, argv: list[str], env: dict[str, str] | None = None) -> int:
    """Start a process in its own session (it outlives this one) with its output in the service log."""
    with open(state.log_file, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    state.pid_file.write_text(str(proc.pid))
    return proc.pid


def _wait_for(url: str, state: ServiceState, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if is_answering(url):
            return
        if state.pid() is None:
            raise RuntimeError(f"{state.name} exited during start; see {state.log_file}")
        time.sleep(0.5)
    raise TimeoutError(f"{state.name} did not answer at {url} within {timeout_s:.0f}s; see {state.log_file}")


def start_label_studio(settings: Settings) -> str:
    """Label Studio on 127.0.0.1 with SQLite under <data root>/label-studio; reused when already up."""
    url = settings.label_studio_base_url
    if is_answering(f"{url}/health"):
        return url
    root = _local_root(settings)
    project_dir = settings.project_dir.absolute()
    venv = (project_dir / settings.label_studio_venv).absolute()
    if not (venv / "bin" / "label-studio").exists():
        raise FileNotFoundError(f"Label Studio is not installed in {venv}: run `make venv`")
    credentials = {
        "username": settings.label_studio_user,
        "password": settings.label_studio_password.get_secret_value(),
        "token": settings.label_studio_token.get_secret_value(),
    }
    template = ensure_template(project_dir / ".cache" / "label-studio-template", venv=venv, **credentials)
    state = ServiceState("label-studio", run_dir_of(settings))
    server = LabelStudioServer(
        root / "label-studio",
        venv=venv,
        port=settings.label_studio_port,
        document_root=root,
        template=template,
        log_path=state.log_file,
        pid_file=state.pid_file,
        **credentials,
    )
    server.start()
    return server.url


def start_sample_site(
    settings: Settings,
    *,
    seed: int = 7,
    images_per_class: int = 60,
    task: str = "classify",
    text_pages_per_topic: int = 0,
) -> tuple[str, Path]:
    """Generate (once per seed, size and task) and serve the sample website; returns (url, truth.json path):
    the textures (multilabel: pictures that show label sets; `text_pages_per_topic`: with article pages,
    sample_site.generate_site), or for `task` "detect" the object gallery (images_per_class images per object
    class)."""
    detect, multilabel = task == "detect", task == "multilabel"
    kind = ("-multilabel" if multilabel else "") + (f"-t{text_pages_per_topic}" if text_pages_per_topic else "")
    site_root = _local_root(settings) / SITE_DIR / f"{'objects-' if detect else ''}seed{seed}-n{images_per_class}{kind}"
    truth = site_root / "truth.json"
    if not truth.exists() and detect:
        generate_object_site(site_root, n=images_per_class * len(OBJECT_CLASSES), seed=seed)
    elif not truth.exists():
        generate_site(
            site_root,
            seed=seed,
            images_per_class=images_per_class,
            multilabel=multilabel,
            text_pages_per_topic=text_pages_per_topic,
        )
    url = f"http://127.0.0.1:{settings.site_port}/"
    state = ServiceState("sample-site", run_dir_of(settings))
    served = state.run_dir / "sample-site.serving"
    if is_answering(url) and served.exists() and served.read_text() == str(site_root):
        return url, truth
    stop_service(state)
    argv = [sys.executable, "-m", "pipelines.demo.sample_site", "serve", "--dir", str(site_root / "site")]
    spawn(state, [*argv, "--port", str(settings.site_port)])
    _wait_for(url, state, timeout_s=30)
    served.write_text(str(site_root))
    return url, truth


def own_prefect_api(settings: Settings) -> str | None:
    """The API of the Prefect server that `services up`, `demo` or `ui` started (its pid file names a live
    process and it answers), else None: a server some other program runs on the port is never taken."""
    api = prefect_api_url(settings)
    if ServiceState("prefect-server", run_dir_of(settings)).pid() is None:
        return None
    return api if is_answering(f"{api}/health") else None


def prefect_api_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.prefect_port}/api"


def start_prefect_server(settings: Settings) -> str:
    """A Prefect server (SQLite under PREFECT_HOME) on 127.0.0.1, so runs show in the UI; reused when Flywheel
    started it before. A server of some other program on the port is refused, never written to."""
    api = prefect_api_url(settings)
    state = ServiceState("prefect-server", run_dir_of(settings))
    if is_answering(f"{api}/health"):
        if state.pid() is None:
            raise RuntimeError(
                f"a Prefect server that Flywheel did not start answers on port {settings.prefect_port}; "
                "set FLYWHEEL_PREFECT_PORT to a free port, or PREFECT_API_URL to use that server on purpose"
            )
        return api
    prefect = Path(sys.executable).with_name("prefect")
    argv = [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(settings.prefect_port)]
    spawn(state, argv, env={"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "true"})
    _wait_for(f"{api}/health", state, timeout_s=180)
    return api


def stop_service(state: ServiceState, timeout_s: float = 20) -> bool:
    """SIGTERM the service's process group (a graceful stop), SIGKILL if it lingers; False if it was not running."""
    try:
        return stop_pid_file(state.pid_file, timeout_s)
    except LabelStudioError:  # a pid file without a process id: nothing to stop
        state.pid_file.unlink(missing_ok=True)
        return False


WORK_POOL = "flywheel-local"
PREFECT_FILE = "deploy/prefect.yaml"


def register_deployments(settings: Settings, api: str) -> None:
    """Create the process work pool (once) and register every deployment in deploy/prefect.yaml."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def ensure_pool() -> None:
        async with get_client() as client:
            with contextlib.suppress(ObjectAlreadyExists):
                await client.create_work_pool(WorkPoolCreate(name=WORK_POOL, type="process"))

    with temporary_settings(updates={PREFECT_API_URL: api}):
        asyncio.run(ensure_pool())
    project_dir = settings.project_dir.absolute()
    prefect = Path(sys.executable).with_name("prefect")
    result = subprocess.run(
        [str(prefect), "--no-prompt", "deploy", "--all", "--prefect-file", PREFECT_FILE],
        cwd=project_dir,
        env={**os.environ, "PREFECT_API_URL": api, "FLYWHEEL_PROJECT_DIR": str(project_dir)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"prefect deploy failed:\n{(result.stdout + result.stderr)[-3000:]}")
    if settings.label_check_every_s:
        schedule_label_check(api, settings.label_check_every_s)


LABEL_CHECK = "label-check/label-check"


def schedule_label_check(api: str, every_s: int) -> None:
    """Run the registered label-check deployment every `every_s` seconds instead of on its cron. The update
    replaces the deployment's schedules and drops the runs the old one queued; the server's scheduler queues
    the new interval's runs within seconds (it rereads a deployment as soon as it changes)."""
    from datetime import timedelta

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentScheduleUpdate, DeploymentUpdate
    from prefect.client.schemas.schedules import IntervalSchedule
    from prefect.settings import PREFECT_API_URL, temporary_settings

    schedule = IntervalSchedule(interval=timedelta(seconds=every_s))
    with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(LABEL_CHECK)
        update = DeploymentUpdate(schedules=[DeploymentScheduleUpdate(schedule=schedule, active=True)])
        client.update_deployment(deployment.id, update)


def start_worker(settings: Settings, api: str, env: dict[str, str] | None = None) -> int:
    """A process worker on the flywheel-local pool (runs deployments' flow runs); reused when running."""
    state = ServiceState("worker", run_dir_of(settings))
    pid = state.pid()
    if pid is not None:
        return pid
    prefect = Path(sys.executable).with_name("prefect")
    return spawn(
        state, [str(prefect), "worker", "start", "--pool", WORK_POOL], env={"PREFECT_API_URL": api, **(env or {})}
    )


def _wait_for_port(port: int, state: ServiceState, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if state.pid() is None:
            raise RuntimeError(f"{state.name} exited during start; see {state.log_file}")
        time.sleep(0.3)
    raise TimeoutError(f"{state.name} did not listen on port {port} within {timeout_s:.0f}s; see {state.log_file}")


def start_webhook_bridge(settings: Settings, api: str) -> str:
    """The webhook bridge (`flywheel label listen`) on 127.0.0.1, relaying Label Studio's annotation webhooks
    to this Prefect server as events; reused when running. Returns the URL Label Studio must post to."""
    url = f"http://127.0.0.1:{settings.bridge_port}/"
    state = ServiceState("webhook-bridge", run_dir_of(settings))
    if state.pid() is None:
        argv = [sys.executable, "-m", "pipelines.cli", "label", "listen", "--port", str(settings.bridge_port)]
        spawn(state, argv, env={"PREFECT_API_URL": api})
    _wait_for_port(settings.bridge_port, state, timeout_s=60)
    return url


def start_flywheel(settings: Settings, api: str, env: dict[str, str] | None = None) -> str:
    """What makes the loop turn by itself: the deployments of deploy/prefect.yaml registered (with their
    automations), the webhook bridge, and a worker that runs their flows, every project sending its webhooks
    to the bridge. Returns the bridge's URL (also set as FLYWHEEL_WEBHOOK_URL for this process)."""
    register_deployments(settings, api)
    bridge = start_webhook_bridge(settings, api)
    os.environ["FLYWHEEL_WEBHOOK_URL"] = bridge
    # Workers poll for runs every 10 s by default; 2 s keeps a local loop's hops short at no cost on loopback.
    start_worker(
        settings, api, env={"FLYWHEEL_WEBHOOK_URL": bridge, "PREFECT_WORKER_QUERY_SECONDS": "2", **(env or {})}
    )
    return bridge


SERVICES = ("worker", "webhook-bridge", "prefect-server", "sample-site", "label-studio")


def stop_all(settings: Settings) -> dict[str, bool]:
    """Stop everything `services up`, `demo` and `ui` started; returns which were running."""
    run_dir = run_dir_of(settings)
    return {name: stop_service(ServiceState(name, run_dir)) for name in SERVICES}


def describe(settings: Settings) -> dict[str, dict[str, object]]:
    """Each service's pid (None when stopped) and where it answers; reads the pid files only (creates nothing)."""
    run_dir = _local_root(settings) / "run"
    urls = {
        "label-studio": settings.label_studio_base_url,
        "sample-site": f"http://127.0.0.1:{settings.site_port}/",
        "prefect-server": f"http://127.0.0.1:{settings.prefect_port}/",
        "worker": None,
        "webhook-bridge": f"http://127.0.0.1:{settings.bridge_port}/",
    }
    return {name: {"pid": ServiceState(name, run_dir).pid(), "url": urls[name]} for name in SERVICES}

"""Shared test fixtures: a real Label Studio server for the whole session, started from a fast template."""

from __future__ import annotations

import os

# albumentations checks for updates over the network on import; tests have no network.
os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from corpus.store import DataRoot

REPO_ROOT = Path(__file__).resolve().parent.parent
LS_VENV = REPO_ROOT / ".venv-ls"
LS_TEMPLATE = REPO_ROOT / ".cache" / "label-studio-template"
# The same admin and token as corpus.settings.Settings' defaults, so a template works for demos too.
LS_USERNAME = "admin@flywheel.local"
LS_PASSWORD = "flywheel-admin"
LS_TOKEN = "flywheel-demo-token-0001"


@dataclass(frozen=True)
class LabelStudioSession:
    """A running Label Studio server for tests; `document_root` is a folder to use as the DataRoot."""

    url: str
    token: str
    data_dir: Path
    document_root: Path
    server: object


@contextlib.contextmanager
def running_label_studio(base: Path, task_lock_ttl_s: int | None = None) -> Iterator[LabelStudioSession]:
    """A real Label Studio server (a copy of a pre-migrated template: ~6-10 s) with its own data and
    document root under `base`, stopped on exit; `task_lock_ttl_s` overrides how long /next locks a task."""
    from pipelines.demo.label_studio_server import LabelStudioError, LabelStudioServer, ensure_template, find_free_port

    if not (LS_VENV / "bin" / "label-studio").exists():
        pytest.fail(
            f"Label Studio server is not installed in {LS_VENV}; run `make test` (it installs label-studio==1.23.2 "
            "into .venv-ls) before running the Label Studio tests."
        )
    template = ensure_template(LS_TEMPLATE, venv=LS_VENV, username=LS_USERNAME, password=LS_PASSWORD, token=LS_TOKEN)
    document_root = base / "root"
    document_root.mkdir()
    last_error: Exception | None = None
    # A free port can be taken between picking and binding; the server refuses a busy port, so retry.
    for _ in range(3):
        server = LabelStudioServer(
            base / "ls-data",
            venv=LS_VENV,
            port=find_free_port(),
            document_root=document_root,
            username=LS_USERNAME,
            password=LS_PASSWORD,
            token=LS_TOKEN,
            log_path=base / "label-studio.log",
            template=template,
            **({"task_lock_ttl_s": task_lock_ttl_s} if task_lock_ttl_s else {}),
        )
        try:
            server.start()
            break
        except LabelStudioError as exc:
            last_error = exc
            server.stop()
    else:
        pytest.fail(f"Label Studio did not start: {last_error}")
    try:
        yield LabelStudioSession(
            url=server.url, token=LS_TOKEN, data_dir=server.data_dir, document_root=document_root, server=server
        )
    finally:
        server.stop()


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioSession]:
    """One real Label Studio server shared by the session's tests."""
    with running_label_studio(tmp_path_factory.mktemp("label-studio")) as session:
        yield session


@pytest.fixture()
def task_lock_ttl_s() -> int | None:
    """How long `own_label_studio` locks a task served by /next to its annotator; None: the supervisor's
    default (label_studio_server.TASK_LOCK_TTL_S). A test module overrides this fixture to change it."""
    return None


@pytest.fixture()
def own_label_studio(tmp_path_factory: pytest.TempPathFactory, task_lock_ttl_s) -> Iterator[LabelStudioSession]:
    """A Label Studio server and data root of this test's own, when shared projects, annotations or models
    left by other tests would change what it measures."""
    with running_label_studio(tmp_path_factory.mktemp("own-label-studio"), task_lock_ttl_s) as session:
        yield session


@dataclass(frozen=True)
class S3Server:
    """A real S3-compatible server (moto's server mode) on loopback, with the credentials tests use."""

    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    region: str

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=self.region,
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def open_root(self, bucket_prefix: str, folder: str = "flywheel") -> tuple[DataRoot, str]:
        """(a data root at s3://<new bucket>/<folder>, reached with this server's endpoint and keys; the
        bucket's name, `<bucket_prefix>-<random>`)."""
        from corpus.settings import Settings
        from corpus.store import open_data_root

        bucket = self.create_bucket(f"{bucket_prefix}-{uuid.uuid4().hex[:12]}")
        settings = Settings(
            data_root=f"s3://{bucket}/{folder}",
            s3_endpoint_url=self.endpoint_url,
            s3_access_key_id=self.access_key_id,
            s3_secret_access_key=self.secret_access_key,
            s3_region=self.region,
            _env_file=None,
        )
        return open_data_root(settings=settings), bucket


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """`moto_server` in a subprocess on a free 127.0.0.1 port (moto answers any credentials; these are
    distinctive so tests can look for leaks of the secret)."""
    import signal
    import subprocess
    import sys
    import time

    import httpx

    from pipelines.demo.label_studio_server import find_free_port

    executable = Path(sys.executable).with_name("moto_server")
    if not executable.exists():
        pytest.fail(f"{executable} is missing: moto[server] is a test dependency of the project venv")
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    port = find_free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(executable), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(endpoint, timeout=2)
            break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"moto_server did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.2)
    try:
        yield S3Server(endpoint, "FLYWHEELTESTKEY", "flywheel-test-secret-0f9a27c4", "us-east-1")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)

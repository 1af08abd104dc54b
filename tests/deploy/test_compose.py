"""deploy/compose.yaml: its services, settings, ports and secrets match what Flywheel and its services read.

Docker is not run here; the file is parsed and checked against the code (corpus.settings.Settings, Prefect's
settings, deploy/prefect.yaml, the Dockerfile). The bucket job runs for real against a moto S3 server.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from corpus.settings import Settings
from pipelines.demo import services

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
COMPOSE_TEXT = (DEPLOY / "compose.yaml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)  # SafeLoader resolves the anchors and `<<` merges
SERVICES = COMPOSE["services"]

EXPECTED_SERVICES = {
    "postgres",
    "prefect-server",
    "deployments",
    "worker",
    "dask-scheduler",
    "dask-worker",
    "label-studio",
    "seaweedfs",
    "create-bucket",
}
# service -> container ports it publishes; the header comment of compose.yaml documents each one.
PUBLISHED = {"prefect-server": {4200}, "label-studio": {8080}, "dask-scheduler": {8787}}
# Read by Prefect straight from os.environ, outside its settings model: (variable, the module that reads it).
PREFECT_ENV_OUTSIDE_SETTINGS = {"PREFECT_SERVER_ENCRYPTION_KEY": "prefect/server/utilities/encryption.py"}
# Names that hold a secret: their value must come from the .env file, required (`${VAR:?...}`).
SECRET_NAME = re.compile(r"PASSWORD|SECRET_ACCESS_KEY|ACCESS_KEY_ID|AUTH_STRING|ENCRYPTION_KEY|USER_TOKEN$")
REQUIRED_VAR = re.compile(r"^\$\{[A-Z0-9_]+:\?[^}]*\}$")


def _environment(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _all_env() -> list[tuple[str, str, str]]:
    return [(service, key, value) for service in SERVICES for key, value in _environment(service).items()]


def _depends_on(service: str) -> list[str]:
    depends = SERVICES[service].get("depends_on") or []
    return list(depends) if isinstance(depends, dict | list) else []


def _fill(value: str) -> str:
    """A value as Compose interpolates it when the .env file sets the required variables (to placeholders)
    and leaves the optional ones to their defaults."""

    def one(match: re.Match) -> str:
        name, operator, rest = match.group(1), match.group(2), match.group(3)
        return rest if operator == ":-" else f"x-{name.lower()}"

    return re.sub(r"\$\{([A-Z0-9_]+)(?:(:-|:\?)([^}]*))?\}", one, value)


def test_the_stack_has_its_services_and_dependencies_point_at_them():
    assert set(SERVICES) == EXPECTED_SERVICES
    for name in SERVICES:
        for dependency in _depends_on(name):
            assert dependency in SERVICES, f"{name} depends on unknown service {dependency}"
    worker = SERVICES["worker"]["depends_on"]
    assert worker["deployments"]["condition"] == "service_completed_successfully"
    assert worker["create-bucket"]["condition"] == "service_completed_successfully"
    for service in ("prefect-server", "label-studio"):
        assert SERVICES[service]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert SERVICES["prefect-server"]["image"] == "prefecthq/prefect:3.8.8-python3.11"
    assert SERVICES["label-studio"]["image"] == "heartexlabs/label-studio:1.23.2"
    assert SERVICES["seaweedfs"]["image"].startswith("chrislusf/seaweedfs:")  # Apache-2.0, not an AGPL store


def test_every_flywheel_variable_is_a_setting_and_the_worker_has_what_it_needs(monkeypatch):
    fields = {f"FLYWHEEL_{name.upper()}" for name in Settings.model_fields}
    named = {key for _, key, _ in _all_env() if key.startswith("FLYWHEEL_")}
    assert named, "compose sets no FLYWHEEL_* variable"
    assert named <= fields, f"not fields of corpus.settings.Settings: {sorted(named - fields)}"
    worker = _environment("worker")
    for key in list(os.environ):
        if key.startswith("FLYWHEEL_"):
            monkeypatch.delenv(key)
    for key, value in worker.items():
        monkeypatch.setenv(key, _fill(value))
    settings = Settings(_env_file=None)  # the worker's values parse as the code reads them
    assert settings.data_root.startswith("s3://")
    assert settings.s3_endpoint_url == "http://seaweedfs:8333"
    assert settings.s3_access_key_id and settings.s3_secret_access_key
    assert settings.label_studio_base_url == "http://label-studio:8080"
    assert settings.label_studio_token_secret  # the token comes from a Prefect Secret block
    assert settings.dask_address == "tcp://dask-scheduler:8786"
    assert str(settings.project_dir) == _dockerfile_workdir()
    scheduler = SERVICES["dask-scheduler"]["command"]
    assert scheduler[scheduler.index("--port") + 1] == settings.dask_address.rsplit(":", 1)[1]
    assert f"tcp://dask-scheduler:{scheduler[scheduler.index('--port') + 1]}" in SERVICES["dask-worker"]["command"]
    label_studio = SERVICES["label-studio"]["environment"]
    assert label_studio["LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"] == worker["FLYWHEEL_WORK_DIR"]
    assert "work:/flywheel/work" in SERVICES["worker"]["volumes"]


def test_every_prefect_variable_is_a_prefect_setting():
    import prefect
    import prefect.settings

    for service, key, _ in _all_env():
        if not key.startswith("PREFECT_"):
            continue
        if key in PREFECT_ENV_OUTSIDE_SETTINGS:
            source = Path(prefect.__file__).parent.parent / PREFECT_ENV_OUTSIDE_SETTINGS[key]
            assert f'"{key}"' in source.read_text(), f"{key} is no longer read by {source}"
            continue
        assert hasattr(prefect.settings, key), f"{service}: {key} is not a Prefect {prefect.__version__} setting"
    database_url = _environment("prefect-server")["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert database_url.startswith("postgresql+asyncpg://")
    assert _environment("prefect-server")["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert SERVICES["prefect-server"]["command"][:5] == ["prefect", "server", "start", "--host", "0.0.0.0"]
    for service in ("deployments", "worker", "dask-worker"):
        assert _environment(service)["PREFECT_API_URL"] == "http://prefect-server:4200/api"


def test_databases_are_the_ones_the_init_script_creates():
    script = (DEPLOY / "postgres" / "init-databases.sh").read_text()
    databases = dict(re.findall(r"CREATE DATABASE (\w+) OWNER (\w+);", script))
    label_studio = _environment("label-studio")
    assert label_studio["DJANGO_DB"] == "default"
    assert databases[label_studio["POSTGRE_NAME"]] == label_studio["POSTGRE_USER"]
    assert label_studio["POSTGRE_HOST"] == "postgres" and label_studio["POSTGRE_PORT"] == "5432"
    url = re.match(
        r"postgresql\+asyncpg://(\w+):[^@]+@postgres:5432/(\w+)$",
        _environment("prefect-server")["PREFECT_API_DATABASE_CONNECTION_URL"],
    )
    assert url and databases[url.group(2)] == url.group(1)
    mounts = SERVICES["postgres"]["volumes"]
    assert "./postgres/init-databases.sh:/docker-entrypoint-initdb.d/init-databases.sh:ro" in mounts
    for variable in re.findall(r'"\$([A-Z_]+)"', script):
        assert variable == "POSTGRES_USER" or variable in _environment("postgres")


def test_the_worker_polls_the_pool_the_deployments_use():
    deployments = yaml.safe_load((DEPLOY / "prefect.yaml").read_text())["deployments"]
    pools = {d["work_pool"]["name"] for d in deployments}
    assert pools == {services.WORK_POOL}
    command = SERVICES["worker"]["command"]
    assert command[command.index("--pool") + 1] == services.WORK_POOL
    assert f"prefect work-pool create {services.WORK_POOL} --type process" in SERVICES["deployments"]["command"][-1]
    assert "--prefect-file deploy/prefect.yaml" in SERVICES["deployments"]["command"][-1]
    assert _environment("deployments")["FLYWHEEL_PROJECT_DIR"] == _dockerfile_workdir()


def test_ports_are_published_only_where_documented():
    header = COMPOSE_TEXT.split("\nname:", 1)[0]
    published = {}
    for name, service in SERVICES.items():
        for mapping in service.get("ports") or []:
            host, _, container = str(mapping).rpartition(":")
            assert host.startswith("${PUBLISH_ADDRESS:-127.0.0.1}:"), f"{name} publishes {mapping} on every address"
            published.setdefault(name, set()).add(int(container))
    assert published == PUBLISHED
    for ports in PUBLISHED.values():
        for port in ports:
            assert f"({port})" in header, f"port {port} is published but not documented in the header"


def test_secrets_come_from_the_env_file_and_every_variable_is_documented():
    for service, key, value in _all_env():
        if SECRET_NAME.search(key):
            assert REQUIRED_VAR.match(value), f"{service}: {key} must be a required ${{VAR:?}}, not {value!r}"
    assert "${PG_PREFECT_PASSWORD:?" in _environment("prefect-server")["PREFECT_API_DATABASE_CONNECTION_URL"]
    example = (DEPLOY / "compose.env.example").read_text()
    code = "\n".join(line for line in COMPOSE_TEXT.splitlines() if not line.lstrip().startswith("#"))
    needed = set(re.findall(r"\$\{([A-Z0-9_]+)", code))
    listed = set(re.findall(r"^([A-Z0-9_]+)=", example, flags=re.MULTILINE))
    assert needed == listed, f"compose.env.example is out of step: {sorted(needed ^ listed)}"
    for line in example.splitlines():  # the example holds no secret value
        key, _, value = line.partition("=")
        if SECRET_NAME.search(key) and not line.startswith("#"):
            assert value == "", f"compose.env.example ships a value for {key}"
    assert _undocumented_variables() == []


def _undocumented_variables() -> list[str]:
    """Environment keys with no comment heading them (a comment may head a group of consecutive keys)."""
    missing, in_env, env_indent, documented = [], False, 0, False
    for line in COMPOSE_TEXT.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if stripped.endswith(("environment:", "&flywheel-env")):
            in_env, env_indent, documented = True, indent, False
            continue
        if not in_env or not stripped:
            continue
        if indent <= env_indent:
            in_env = False
            continue
        if stripped.startswith("#"):
            documented = True
        elif stripped.startswith("<<:"):
            documented = False
        elif documented:
            continue  # a key of the group the last comment heads
        else:
            missing.append(stripped.split(":", 1)[0])
    return missing


def _dockerfile_workdir() -> str:
    (workdir,) = re.findall(r"^WORKDIR (\S+)$", (DEPLOY / "Dockerfile").read_text(), flags=re.MULTILINE)
    return workdir


def test_the_image_installs_torch_first_then_the_project():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    runs = re.findall(r"^RUN (.*)$", dockerfile, flags=re.MULTILINE)
    torch = next(i for i, run in enumerate(runs) if "torch==2.13.0" in run)
    project = next(i for i, run in enumerate(runs) if re.search(r"pip install \.$", run))
    assert torch < project
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    assert '"torch==2.13.0"' in pyproject  # the image and the project pin the same torch
    built = {name for name, service in SERVICES.items() if "build" in service}
    assert built == {"deployments", "worker", "dask-scheduler", "dask-worker", "create-bucket"}
    assert all(SERVICES[name]["build"]["dockerfile"] == "deploy/Dockerfile" for name in built)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_create_bucket_makes_the_data_roots_bucket_on_an_s3_server(tmp_path):
    moto = Path(sys.executable).with_name("moto_server")
    if not moto.exists():
        pytest.skip("moto[server] (a dev extra) is not installed")
    port = _free_port()
    server = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        env = {
            **os.environ,
            "FLYWHEEL_DATA_ROOT": "s3://flywheel-test/data",
            "FLYWHEEL_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "FLYWHEEL_S3_ACCESS_KEY_ID": "test-key",
            "FLYWHEEL_S3_SECRET_ACCESS_KEY": "test-secret",
        }
        for _ in range(2):  # the second run finds the bucket and succeeds too
            subprocess.run([sys.executable, str(DEPLOY / "create_bucket.py")], env=env, check=True, timeout=120)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            listing = httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text
            if "flywheel-test" in listing:
                break
            time.sleep(0.2)
        assert "<Name>flywheel-test</Name>" in listing
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_bucket_of_refuses_a_data_root_that_is_not_s3():
    sys.path.insert(0, str(DEPLOY))
    try:
        from create_bucket import bucket_of
    finally:
        sys.path.remove(str(DEPLOY))
    assert bucket_of("s3://flywheel/data") == "flywheel"
    with pytest.raises(ValueError, match="s3://"):
        bucket_of("/srv/data")

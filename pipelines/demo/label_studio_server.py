"""The Label Studio server process: start on a fixed loopback port, health-check, stop, and a fast template."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx

# Settings Label Studio also reads from bare names (LABEL_STUDIO_X, then HEARTEX_X, then X): a stray one in the
# caller's environment would silently change the server (notes/label-studio.md, gotcha 4).
_STRAY_ENV = ("USERNAME", "PASSWORD", "HOST", "PORT", "DEBUG", "USER_TOKEN")
# How long a task served by the queue (/next) stays locked to the person it was served to. Label Studio CE's
# default is 86400 s (tasks/models.py set_lock): someone who opens a task and walks away holds it for a day, and
# a task wanted by one annotator is served to nobody else meanwhile, so a round can stall on one closed browser
# tab until its deadline. Labeling one image takes seconds to a few minutes; 15 minutes covers a slow answer with
# room to spare and gives an abandoned task back to the queue within a quarter hour.
TASK_LOCK_TTL_S = 900
TEMPLATE_MARKER = "_flywheel_template.json"


class LabelStudioError(RuntimeError):
    """The Label Studio server could not be started or reached."""


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _pid_alive(pid: int) -> bool:
    # Reap it first if it is our own exited child, since a zombie still answers signal 0.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LabelStudioServer:
    """One Label Studio server process over one data dir, bound to `host:port` only.

    The admin user, password and legacy API token are applied when the data dir is first created
    (notes/label-studio.md §3); a copy of a template data dir keeps the template's credentials.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        venv: Path,
        port: int,
        document_root: Path,
        username: str,
        password: str,
        token: str,
        host: str = "127.0.0.1",
        log_path: Path | None = None,
        template: Path | None = None,
        pid_file: Path | None = None,
        task_lock_ttl_s: int = TASK_LOCK_TTL_S,
    ) -> None:
        # Absolute, because the server runs with the data dir as its working directory.
        self.data_dir = Path(data_dir).absolute()
        self.venv = Path(venv).absolute()
        self.port = int(port)
        self.document_root = Path(document_root).absolute()
        self.username = username
        self.password = password
        self.token = token
        self.host = host
        self.log_path = Path(log_path) if log_path else self.data_dir.parent / f"{self.data_dir.name}.log"
        self.template = Path(template) if template else None
        self.pid_file = Path(pid_file) if pid_file else None
        if task_lock_ttl_s < 1:
            raise ValueError(f"task_lock_ttl_s must be >= 1, got {task_lock_ttl_s}")
        self.task_lock_ttl_s = int(task_lock_ttl_s)
        self._proc: subprocess.Popen | None = None

    def __repr__(self) -> str:
        return f"LabelStudioServer({self.url!r}, data_dir={str(self.data_dir)!r})"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def executable(self) -> Path:
        return self.venv / "bin" / "label-studio"

    def environment(self) -> dict[str, str]:
        """The environment the server runs with: the caller's, minus stray names, plus the recipe of §2."""
        env = {k: v for k, v in os.environ.items() if k not in _STRAY_ENV}
        home = self.data_dir / "_home"
        env.update(
            {
                "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
                "LABEL_STUDIO_USERNAME": self.username,
                "LABEL_STUDIO_PASSWORD": self.password,
                "LABEL_STUDIO_USER_TOKEN": self.token,
                "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
                "SSRF_PROTECTION_ENABLED": "false",
                "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
                "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(self.document_root),
                "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
                "TASK_LOCK_TTL": str(self.task_lock_ttl_s),
                "SENTRY_DSN": "",
                "FRONTEND_SENTRY_DSN": "",
                "LATEST_VERSION_CHECK": "false",
                "COLLECT_ANALYTICS": "false",
                "HOME": str(home),
                "XDG_CONFIG_HOME": str(home / ".config"),
            }
        )
        return env

    def is_healthy(self) -> bool:
        """True when GET /health on this exact port answers {"status": "UP"}."""
        try:
            response = httpx.get(f"{self.url}/health", timeout=2.0)
            return response.status_code == 200 and response.json().get("status") == "UP"
        except (httpx.HTTPError, ValueError, AttributeError):
            return False

    def start(self, timeout_s: float = 240) -> None:
        """Start the server and wait until it is healthy on `port`; raise LabelStudioError otherwise.

        The process runs in its own session, so it outlives the caller unless `stop()` is called.
        """
        if not self.executable.exists():
            raise LabelStudioError(
                f"Label Studio is not installed at {self.executable}; install it with "
                f"`python3 -m venv {self.venv} && {self.venv}/bin/pip install label-studio==1.23.2` (or `make test`)"
            )
        if self._proc is not None and self._proc.poll() is None:
            raise LabelStudioError(f"{self!r} is already running (pid {self._proc.pid})")
        # Label Studio moves silently to port+1 when its port is busy (gotcha 3), so refuse up front.
        if _port_in_use(self.host, self.port):
            raise LabelStudioError(f"port {self.port} on {self.host} is already in use; pick another port")
        if not self.data_dir.exists() and self.template is not None:
            if not (self.template / "label_studio.sqlite3").exists():
                raise LabelStudioError(f"template {self.template} is not an initialised Label Studio data dir")
            template_key = _template_key(self.template)
            if template_key is not None and template_key != credentials_key(self.username, self.password, self.token):
                raise LabelStudioError(
                    f"template {self.template} was built with other admin credentials; "
                    "build one with ensure_template() and these credentials"
                )
            shutil.copytree(self.template, self.data_dir, ignore=shutil.ignore_patterns("_home", "*.log"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "_home").mkdir(exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(self.executable),
            "start",
            "--no-browser",
            "--internal-host",
            self.host,
            "--port",
            str(self.port),
            "--host",
            self.url,
        ]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                cmd,
                env=self.environment(),
                cwd=str(self.data_dir),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        if self.pid_file is not None:
            self.pid_file.parent.mkdir(parents=True, exist_ok=True)
            self.pid_file.write_text(f"{self._proc.pid}\n")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise LabelStudioError(
                    f"Label Studio exited with code {self._proc.returncode} before it was healthy; "
                    f"last log lines:\n{self._log_tail()}"
                )
            if self.is_healthy():
                return
            time.sleep(0.25)
        self.stop()
        raise LabelStudioError(
            f"Label Studio did not answer /health on {self.url} within {timeout_s:.0f} s; "
            f"last log lines:\n{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 15) -> None:
        """SIGTERM the server's process group, wait, then SIGKILL; a no-op when it is not running."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            _terminate_group(self._proc.pid, timeout_s, wait=self._proc.wait)
        self._proc = None
        if self.pid_file is not None:
            with contextlib.suppress(FileNotFoundError):
                self.pid_file.unlink()

    def kill(self) -> None:
        """SIGKILL the server's process group at once, as a crash would (no clean shutdown); for resilience tests."""
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait(timeout=30)
        self._proc = None

    def __enter__(self) -> LabelStudioServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _terminate_group(pid: int, timeout_s: float, wait=None) -> None:
    """SIGTERM the process group led by `pid`, then SIGKILL it if it outlives `timeout_s`."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if wait is not None:
        try:
            wait(timeout=timeout_s)
            return
        except subprocess.TimeoutExpired:
            pass
    else:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _pid_alive(pid):
            time.sleep(0.2)
        if not _pid_alive(pid):
            return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    if wait is not None:
        wait(timeout=timeout_s)


def stop_pid_file(pid_file: Path, timeout_s: float = 15) -> bool:
    """Stop a detached server recorded in `pid_file`; True if one was running. The file is removed."""
    pid_file = Path(pid_file)
    if not pid_file.exists():
        return False
    try:
        pid = int(pid_file.read_text().strip())
    except ValueError as exc:
        raise LabelStudioError(f"{pid_file} does not hold a process id") from exc
    running = _pid_alive(pid)
    if running:
        _terminate_group(pid, timeout_s)
    pid_file.unlink(missing_ok=True)
    return running


def ensure_template(template_dir: Path, *, venv: Path, username: str, password: str, token: str) -> Path:
    """An initialised Label Studio data dir at `template_dir` (migrated, admin + token inside), built once.

    A copy of it starts in ~6 s instead of 50-90 s of migrations (notes/label-studio.md §2). It is
    built in a temporary folder beside its target and renamed into place, so a half-built template
    is never used.
    """
    key = credentials_key(username, password, token)
    template_dir = Path(template_dir)
    if _template_key(template_dir) == key:
        return template_dir
    if (template_dir / "label_studio.sqlite3").exists():
        # That one holds other credentials (they are fixed at creation): keep one per set beside it.
        template_dir = template_dir.with_name(f"{template_dir.name}-{key[:8]}")
        if _template_key(template_dir) == key:
            return template_dir
    template_dir.parent.mkdir(parents=True, exist_ok=True)
    # One builder at a time (parallel test sessions); the others wait and then reuse its template.
    with open(template_dir.parent / f".{template_dir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _template_key(template_dir) != key:
            _build_template(template_dir, venv=venv, username=username, password=password, token=token)
    return template_dir


def credentials_key(username: str, password: str, token: str) -> str:
    """A one-way fingerprint of the admin credentials a data dir was created with (never the secrets)."""
    return hashlib.sha256(json.dumps([username, password, token]).encode()).hexdigest()[:32]


def _template_key(template_dir: Path) -> str | None:
    marker = template_dir / TEMPLATE_MARKER
    if not (template_dir / "label_studio.sqlite3").exists() or not marker.exists():
        return None
    try:
        return json.loads(marker.read_text()).get("credentials_key")
    except (OSError, ValueError):
        return None


def _build_template(template_dir: Path, *, venv: Path, username: str, password: str, token: str) -> None:
    work = Path(tempfile.mkdtemp(prefix=f".build-{template_dir.name}-", dir=template_dir.parent))
    try:
        data_dir = work / "data"
        docs = work / "docs"
        docs.mkdir()
        server = LabelStudioServer(
            data_dir,
            venv=venv,
            port=find_free_port(),
            document_root=docs,
            username=username,
            password=password,
            token=token,
            log_path=work / "server.log",
        )
        server.start(timeout_s=600)
        server.stop()
        shutil.rmtree(data_dir / "_home", ignore_errors=True)
        marker = {"credentials_key": credentials_key(username, password, token), "built_at": time.time()}
        (data_dir / TEMPLATE_MARKER).write_text(json.dumps(marker))
        staged = template_dir.parent / f".staged-{uuid.uuid4().hex}"
        data_dir.rename(staged)
        try:
            staged.rename(template_dir)
        except OSError:
            # Another process won the race and put its template in place first: use that one.
            shutil.rmtree(staged, ignore_errors=True)
            if not (template_dir / "label_studio.sqlite3").exists():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)

"""Serving a generated sample site: a threaded loopback static HTTP server with CORS and ETags."""

from __future__ import annotations

import functools
import os
import signal
import threading
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class _Handler(SimpleHTTPRequestHandler):
    """Static files with wide-open CORS (Label Studio's UI loads images cross-origin) and no access log.

    Files carry an ETag (mtime in ns and size, as nginx builds it) besides the Last-Modified the standard
    handler sends; a matching If-None-Match gets 304 Not Modified, so recrawls are tested for real.
    """

    _etag: str | None = None

    def send_head(self) -> Any:
        self._etag = None
        path = self.translate_path(self.path)
        if os.path.isfile(path):
            st = os.stat(path)
            self._etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
            wanted = [tag.strip() for tag in self.headers.get("If-None-Match", "").split(",")]
            if self._etag in wanted:
                self.send_response(HTTPStatus.NOT_MODIFIED)
                self.end_headers()
                return None
        return super().send_head()

    def end_headers(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        if self._etag:
            self.send_header("ETag", self._etag)
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class SiteServer:
    """A threaded static HTTP server for `site_dir` on loopback; a context manager (`with SiteServer(d) as s`)."""

    def __init__(self, site_dir: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        site_dir = Path(site_dir)
        if not site_dir.is_dir():
            raise FileNotFoundError(f"site folder not found: {site_dir}")
        self.site_dir = site_dir
        self.host = host
        self.port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("server not started")
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> SiteServer:
        handler = functools.partial(_Handler, directory=str(self.site_dir))
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="site-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def serve_forever(self) -> None:
        """Serve in the foreground (starting if needed) until SIGTERM or Ctrl-C."""
        if self._server is None:
            self.start()
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        try:
            while not stopped.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> SiteServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""Real files for the import tests: distinct small JPEGs, ImageFolder trees, and a loopback HTTP server."""

from __future__ import annotations

import io
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image


def jpeg_bytes(seed: int, side: int = 64) -> bytes:
    """A distinct JPEG (noise with a bright block placed by the seed): no two seeds are near-duplicates."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, size=(side, side, 3), dtype=np.uint8)
    x, y = (int(v) for v in rng.integers(0, side // 2, size=2))
    pixels[y : y + side // 3, x : x + side // 3] = rng.integers(0, 255, size=3, dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write_jpeg(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg_bytes(seed))
    return path


def make_imagefolder(base: Path, classes: tuple[str, ...] = ("cat", "dog", "fox"), per_class: int = 4) -> Path:
    """An ImageFolder tree: base/<class>/<n>.jpg, distinct images."""
    seed = 0
    for name in classes:
        for n in range(per_class):
            write_jpeg(base / name / f"{n}.jpg", seed := seed + 1)
    return base


class FileServer:
    """A threaded HTTP server on 127.0.0.1 serving `folder` (404 for what is not there)."""

    def __init__(self, folder: Path) -> None:
        handler = lambda *a, **k: _Quiet(*a, directory=str(folder), **k)  # noqa: E731
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *_args: object) -> None:
        pass

"""A loopback site where a third of the links 404, slowly, and one page answers 429 on its first visit."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from loopback_server import LoopbackServer

PAGES = 60
# Each page links to two pages that exist and one that does not: a third of the links 404.
LINKS_PER_PAGE = 3
MISSING = PAGES // 2
# A CMS renders its not-found page through the whole application while articles come from a cache: the 404s are
# the slow answers, as on the real site behind the issue. 40 ms / AUTOTHROTTLE_TARGET_CONCURRENCY (4) = 10 ms,
# ten times the delay a loopback page's latency earns.
NOT_FOUND_LATENCY_S = 0.04
BUSY_PATH = "/busy.html"


def page_path(i: int) -> str:
    return f"/article/{_word(i)}.html"


def missing_path(k: int) -> str:
    return f"/gone/{_word(k)}.html"


def _word(i: int) -> str:
    """A digit-free slug (URL templates turn digits into N, and their budget would cut the crawl)."""
    letters = "abcdefghij"
    return "".join(letters[int(d)] for d in str(i))


def _links(i: int) -> list[str]:
    links = [page_path((i + 1) % PAGES), page_path((i * 7 + 3) % PAGES), missing_path(i % MISSING)]
    if i == 0:
        links.insert(0, BUSY_PATH)
    return links


def _page(title: str, links: list[str]) -> bytes:
    anchors = "".join(f'<a href="{href}">{href}</a> ' for href in links)
    return (
        f"<!DOCTYPE html><html><head><title>{title}</title></head>"
        f"<body><main><h1>{title}</h1><p>Words about {title}.</p><nav>{anchors}</nav></main></body></html>"
    ).encode()


class _Handler(BaseHTTPRequestHandler):
    server: BrokenLinksServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in {"Content-Type": "text/html; charset=utf-8", **(headers or {})}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        with self.server.lock:
            self.server.hits[path] = self.server.hits.get(path, 0) + 1
            first_visit = self.server.hits[path] == 1
        if path == "/robots.txt":
            return self._send(200, b"User-agent: *\nAllow: /\n", {"Content-Type": "text/plain"})
        if path == BUSY_PATH:
            if first_visit:  # a site that asks once to slow down, then serves
                return self._send(429, b"slow down", {"Content-Type": "text/plain"})
            return self._send(200, _page("busy", []))
        if path in self.server.pages:
            i = self.server.pages[path]
            return self._send(200, _page(f"article {_word(i)}", _links(i)))
        time.sleep(NOT_FOUND_LATENCY_S)
        self._send(404, _page("not found", []))


class BrokenLinksServer(LoopbackServer):
    """The site on 127.0.0.1 (a free port); a context manager. `hits` counts requests per path."""

    def __init__(self) -> None:
        super().__init__(_Handler)
        self.pages = {page_path(i): i for i in range(PAGES)}
        self.hits: dict[str, int] = {}
        self.lock = threading.Lock()

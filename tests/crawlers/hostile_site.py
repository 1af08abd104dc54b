"""A hostile loopback web site for crawler tests, and a tripwire middleware proving no traffic leaves loopback."""

from __future__ import annotations

import gzip
import ipaddress
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest

# The crawl child imports this module for its tripwire middleware with only tests/crawlers on its path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from loopback_server import LoopbackServer

SECRET_COOKIE = "flywheel-test-session-6f1c"
SECRET_PASSWORD = "pw-7d2a-never-log"
PAGE_CAP = 256 * 1024  # FLYWHEEL_PAGE_MAXSIZE the tests set: small, so the hostile bodies pass it quickly
IMAGE_CAP = 256 * 1024
BOMB = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)  # 64 MiB of zeros in ~64 KiB
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cf00000301010018dd8db40000000049454e44ae426082"
)
# Redirect targets the SSRF guard must refuse; the spider's allowed_domains lists these hosts so that
# the offsite filter does not decide first.
SSRF_TARGETS = {
    "/to-metadata": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "/to-private": "http://10.0.0.1/admin",
    "/to-localhost": "http://localhost:{port}/index.html",
}
SSRF_HOSTS = ["169.254.169.254", "10.0.0.1", "localhost"]
CRAWL_DELAY = 0.05


def _page(title: str, body: str, links: list[str] = ()) -> bytes:
    anchors = "".join(f'<a href="{href}">{href}</a> ' for href in links)
    return (
        f"<!DOCTYPE html><html><head><title>{title}</title></head>"
        f"<body><main><h1>{title}</h1><p>{body}</p><nav>{anchors}</nav></main></body></html>"
    ).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server: HostileServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {"Content-Type": "text/html; charset=utf-8"}).items():
            self.send_header(key, value)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        self.server.hits.append(self.path)
        port = self.server.server_address[1]
        if path == "/robots.txt":
            robots = f"User-agent: *\nDisallow: /private/\nCrawl-delay: {CRAWL_DELAY}\n"
            robots += f"Sitemap: {self.server.url}/sitemap.xml\n"
            return self._send(200, robots.encode(), {"Content-Type": "text/plain"})
        if path == "/sitemap.xml":
            body = (
                '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                f"<url><loc>{self.server.url}/from-sitemap.html</loc></url></urlset>"
            )
            return self._send(200, body.encode(), {"Content-Type": "application/xml"})
        if path == "/feed.xml":
            body = (
                '<?xml version="1.0"?><rss version="2.0"><channel><title>f</title>'
                f"<item><link>{self.server.url}/from-feed.html</link></item></channel></rss>"
            )
            return self._send(200, body.encode(), {"Content-Type": "application/rss+xml"})
        if path == "/ports.html":  # links, an image and a redirect to other origins on the same loopback host
            neighbour, own_https = self.server.neighbour_url, f"https://127.0.0.1:{port}"
            links = [f"{neighbour}/linked.html", "/to-neighbour", f"{own_https}/other-scheme.html", "/q?a=1"]
            page = _page("Ports", "Other origins on this host.", links)
            return self._send(200, page.replace(b"</main>", f'<img src="{neighbour}/img.png"></main>'.encode()))
        if path == "/to-neighbour":
            return self._send(302, b"", {"Location": f"{self.server.neighbour_url}/redirected.html"})
        if path in ("/from-sitemap.html", "/from-feed.html"):
            return self._send(200, _page(path, "Only a seed links here."))
        if path == "/index.html":
            links = [
                "/redirect/0",
                "/huge.html",
                "/huge-chunked.html",
                "/drip.html",
                "/bomb.html",
                "/wrong-type.png",
                "/no-type",
                "/json-as-html.html",
                "/bad-encoding.html",
                "/malformed.html",
                "/q?b=2&a=1",
                "/q?a=1&b=2",
                "/q?a=1&b=2&utm_source=news#top",
                "/calendar/2026/01",
                "/echo?visit=1",
                "/echo?visit=2",
                f"http://user:{SECRET_PASSWORD}@127.0.0.1:{port}/echo?visit=3",
                "/images.html",
                *SSRF_TARGETS,
            ]
            feed = b'<head><link rel="alternate" type="application/rss+xml" href="/feed.xml">'
            index = _page("Hostile index", "Every trap a crawler meets.", links)
            return self._send(200, index.replace(b"<head>", feed))
        if path.startswith("/redirect/"):
            n = int(path.rsplit("/", 1)[1])
            return self._send(302, b"", {"Location": f"/redirect/{n + 1}"})
        if path in SSRF_TARGETS:
            return self._send(302, b"", {"Location": SSRF_TARGETS[path].format(port=port)})
        if path == "/huge.html":  # announced size over the cap
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(50 * 1024 * 1024))
            self.end_headers()
            return self._stream(50 * 1024 * 1024)
        if path == "/huge-chunked.html":  # no length announced: the cap must cut the stream
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            return self._stream(50 * 1024 * 1024)
        if path == "/drip.html":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html><body>")
            for _ in range(600):  # one byte every 0.1 s: a minute, far past DOWNLOAD_TIMEOUT
                if self.server.stopping.is_set():
                    return
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.1)
            return
        if path == "/bomb.html":
            headers = {"Content-Type": "text/html", "Content-Encoding": "gzip", "Content-Length": str(len(BOMB))}
            return self._send(200, BOMB, headers)
        if path == "/wrong-type.png":
            return self._send(200, _page("Served as PNG", "HTML under an image type."), {"Content-Type": "image/png"})
        if path == "/no-type":
            return self._send(200, _page("No type", "HTML without a Content-Type."), {})
        if path == "/json-as-html.html":
            return self._send(200, json.dumps({"not": "html"}).encode(), {"Content-Type": "text/html"})
        if path == "/bad-encoding.html":
            body = b"<html><head><title>Bad bytes</title></head><body><p>caf\xe9 \xff\xfe\xc3 invalid utf-8</p></body>"
            return self._send(200, body, {"Content-Type": "text/html; charset=x-no-such-charset"})
        if path == "/malformed.html":
            body = (
                b"<html><head><title>Malformed</title><body><div><p>Unclosed <b>bold <i>italic<table><tr><td>cell"
                + b"<div>" * 3000
                + b"deep text</span></i></html></html><p>after the end"
            )
            return self._send(200, body)
        if path == "/q":
            return self._send(200, _page("Query page", f"query {sorted(query.items())}"))
        if path.startswith("/calendar/"):
            year, month = (int(v) for v in path.split("/")[2:4])
            nxt = (year + month // 12, month % 12 + 1)
            page = _page(f"Calendar {year}-{month:02d}", "Nothing on.", [f"/calendar/{nxt[0]}/{nxt[1]:02d}"])
            return self._send(200, page)
        if path == "/echo":
            seen = f"cookie={self.headers.get('Cookie')} authorization={self.headers.get('Authorization')}"
            headers = {"Content-Type": "text/html", "Set-Cookie": f"session={SECRET_COOKIE}; Path=/"}
            return self._send(200, _page("Echo", seen), headers)
        if path == "/images.html":
            body = (
                '<html><head><title>Images</title><meta property="og:image" content="/img/og.png">'
                '<meta property="og:image:alt" content="Open Graph alt"></head><body>'
                '<img src="/img/fake.jpg" alt="html as jpeg"><img src="/img/real.bin" alt="png as text">'
                '<img src="/img/huge.jpg" alt="too big"><img src="/img/bomb.png" alt="gzip bomb"></body></html>'
            )
            return self._send(200, body.encode())
        if path == "/img/fake.jpg":
            return self._send(200, _page("not an image", "x"), {"Content-Type": "image/jpeg"})
        if path in ("/img/real.bin", "/img/og.png"):
            return self._send(200, PNG, {"Content-Type": "text/plain"})
        if path == "/img/huge.jpg":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            self.wfile.write(b"\xff\xd8\xff\xe0")
            return self._stream(8 * IMAGE_CAP)
        if path == "/img/bomb.png":
            headers = {"Content-Type": "image/png", "Content-Encoding": "gzip", "Content-Length": str(len(BOMB))}
            return self._send(200, BOMB, headers)
        return self._send(404, b"not found", {"Content-Type": "text/plain"})

    def _stream(self, size: int) -> None:
        chunk = b"a" * 65536
        sent = 0
        while sent < size and not self.server.stopping.is_set():
            try:
                self.wfile.write(chunk)
            except OSError:  # the crawler hung up, as it should
                return
            sent += len(chunk)


class HostileServer(LoopbackServer):
    """The hostile site on 127.0.0.1 (a free port); a context manager. `hits` lists the paths requested."""

    def __init__(self, neighbour_url: str = "http://127.0.0.1:9") -> None:
        super().__init__(_Handler)
        self.neighbour_url = neighbour_url  # another origin /ports.html points at
        self.hits: list[str] = []
        self.connections = 0  # TCP connections accepted, counted before a byte is read
        self.stopping = threading.Event()

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.connections += 1
        return True

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        super().__exit__(*exc)


class TripwireMiddleware:
    """Test-only downloader middleware, last before the network: refuses and records any non-loopback request.

    If the SSRF guard works it never fires; if it fires, no traffic was sent either.
    """

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> TripwireMiddleware:
        return cls(crawler)

    def process_request(self, request: Request) -> None:
        host = (urlsplit(request.url).hostname or "").strip("[]")
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"  # loopback by definition (RFC 6761 §6.3)
        if not loopback:
            self.crawler.stats.inc_value("tripwire/fired")
            raise IgnoreRequest(f"TRIPWIRE: {request.url} would have left loopback")


def big_robots_txt(rules: int = 150_000) -> bytes:
    """A robots.txt of ~4 MB: a real rule first, `rules` filler rules, then a rule past any 500 KiB cap."""
    filler = "".join(f"Disallow: /filler/{i}/*.php\n" for i in range(rules))
    return f"User-agent: *\nDisallow: /private/\n{filler}Disallow: /p/\n".encode()


class _WideHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server: WideServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        pages, path = self.server.pages, urlsplit(self.path).path
        if path == "/robots.txt":
            status, body, kind = 200, self.server.robots, "text/plain"
        elif path == "/index.html":
            links = [f"/missing/{i}" for i in range(self.server.missing)] + [f"/p/{i}" for i in range(pages)]
            links.append("/private/secret.html")
            status, body, kind = 200, _page("Wide", "Many pages.", links), "text/html"
        elif path.startswith(("/p/", "/private/")):
            n = int(path.rsplit("/", 1)[1]) if path.startswith("/p/") else 0
            links = [f"/p/{(n * 7 + k) % pages}" for k in range(1, 20)] + [f"/missing/{n}"]
            status, body, kind = 200, _page(f"Page {n}", "A page of a wide site.", links), "text/html"
        else:
            status, body, kind = 404, b"not found", "text/plain"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class WideServer(LoopbackServer):
    """A wide loopback site: an index linking `pages` pages (each linking 19 more) and `missing` dead links first."""

    def __init__(self, pages: int = 400, missing: int = 10, robots: bytes = b"User-agent: *\nDisallow: /private/\n"):
        super().__init__(_WideHandler)
        self.pages, self.missing, self.robots = pages, missing, robots
        self.hits: list[str] = []

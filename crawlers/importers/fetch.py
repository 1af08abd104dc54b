"""URL fetching for imports, under the crawler's rules: its SSRF address policy on every connection, robots.txt
with its Crawl-delay, a per-host delay, its size and redirect limits; every refusal comes back with its reason."""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpcore
from protego import Protego

from crawlers import settings as crawl_settings
from crawlers.config import parse_origin
from crawlers.netguard import AddressPolicy, IPAddress
from crawlers.urls import DEFAULT_PORTS

_TIMEOUTS = {"connect": 10.0, "read": float(crawl_settings.DOWNLOAD_TIMEOUT), "write": 10.0, "pool": 10.0}
_REDIRECTS = (301, 302, 303, 307, 308)


class RefusedAddress(httpcore.ConnectError):
    """The SSRF guard refused a connection: the host is, or resolves to, an address the import may not reach."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's network backend that resolves the host itself, checks every address with the crawler's
    AddressPolicy and connects to the checked address: no DNS answer can change between check and connect.
    TLS still verifies the host name (httpcore sends the URL's host as SNI)."""

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy
        self.allowed = {(urlsplit(o).hostname, urlsplit(o).port) for o in policy.allowed_origins}
        self.inner = httpcore.SyncBackend()

    def resolve(self, host: str, port: int) -> list[IPAddress]:
        try:
            return [ipaddress.ip_address(host.strip("[]"))]
        except ValueError:
            pass
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(ipaddress.ip_address(i[4][0].split("%", 1)[0]) for i in infos))

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        addresses = self.resolve(host, port)
        if (host.lower().strip("[]"), port) not in self.allowed:
            reason = self.policy.find_block_reason(host, addresses)
            if reason is not None:
                raise RefusedAddress(reason)
        return self.inner.connect_tcp(str(addresses[0]), port, timeout, local_address, socket_options)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass
class Fetched:
    """One URL's outcome: the body, or why there is none (`reason`: http/404, ssrf/private, robots, ...)."""

    url: str
    data: bytes | None = None
    reason: str | None = None
    final_url: str | None = None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class GuardedFetcher:
    """Fetches URLs one at a time, as politely as the crawler: robots.txt per origin (cut at the size RFC 9309
    lets a parser stop at), at least `delay_s` between two requests to one host or the Crawl-delay robots.txt
    asks (capped as the crawler caps it), redirects re-checked hop by hop."""

    def __init__(self, allowed_private_hosts: list[str] | None = None, delay_s: float = 0.25) -> None:
        origins = [parse_origin(o, default_scheme="http", default_port=80) for o in allowed_private_hosts or []]
        self.policy = AddressPolicy(origins, crawl_settings.FLYWHEEL_ALLOWED_PRIVATE_NETWORKS)
        self.pool = httpcore.ConnectionPool(network_backend=GuardedBackend(self.policy), max_connections=4)
        self.delay_s = delay_s
        self.robots: dict[str, Protego | None] = {}
        self.delays: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.agent = crawl_settings.USER_AGENT

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> GuardedFetcher:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _wait(self, host: str) -> None:
        gap = max(self.delay_s, self.delays.get(host, 0.0))
        due = self.last.get(host, 0.0) + gap
        if (now := time.monotonic()) < due:
            time.sleep(due - now)
        self.last[host] = time.monotonic()

    def _get(self, url: str, limit: int) -> tuple[int, dict[str, str], bytes]:
        """One GET (no redirects followed): status, headers, body up to `limit` bytes (ValueError beyond)."""
        self._wait(urlsplit(url).hostname or "")
        headers = [(b"User-Agent", self.agent.encode()), (b"Accept", b"image/*,*/*;q=0.5")]
        with self.pool.stream("GET", url, headers=headers, extensions={"timeout": _TIMEOUTS}) as response:
            head = {k.decode().lower(): v.decode("latin-1") for k, v in response.headers}
            body = bytearray()
            for chunk in response.iter_stream():
                body += chunk
                if len(body) > limit:
                    raise ValueError("size/too_large")
            return response.status, head, bytes(body)

    def _robots_for(self, url: str) -> Protego | None:
        """The origin's robots.txt (None: everything allowed). RFC 9309 §2.3.1: 4xx allows all, 5xx disallows
        all; a refused address raises, as it would for the URL itself."""
        origin = _origin(url)
        if origin not in self.robots:
            status, _, body = self._get(origin + "/robots.txt", 4 * crawl_settings.FLYWHEEL_ROBOTSTXT_MAXSIZE)
            if status >= 500:
                parser: Protego | None = Protego.parse("User-agent: *\nDisallow: /")
            elif status >= 400:
                parser = None
            else:
                parser = Protego.parse(body[: crawl_settings.FLYWHEEL_ROBOTSTXT_MAXSIZE].decode("utf-8", "replace"))
                delay = parser.crawl_delay(self.agent)
                if delay:
                    host = urlsplit(url).hostname or ""
                    self.delays[host] = min(float(delay), crawl_settings.FLYWHEEL_MAX_CRAWL_DELAY)
            self.robots[origin] = parser
        return self.robots[origin]

    def fetch(self, url: str) -> Fetched:
        """The body of `url`, or a Fetched with the reason it was refused or failed; never raises for one URL."""
        try:
            return self._fetch(url)
        except RefusedAddress as exc:
            return Fetched(url, reason=f"ssrf/{exc.reason.split(' ', 1)[0]}")
        except ValueError as exc:
            return Fetched(url, reason=str(exc) if "/" in str(exc) else f"bad_url/{exc}")
        except httpcore.TimeoutException:
            return Fetched(url, reason="timeout")
        except (httpcore.ConnectError, OSError):
            return Fetched(url, reason="connection/failed")
        except httpcore.ProtocolError:
            return Fetched(url, reason="connection/protocol")
        except httpcore.UnsupportedProtocol:
            return Fetched(url, reason="bad_url/scheme")

    def _fetch(self, url: str) -> Fetched:
        current = url
        for _hop in range(crawl_settings.REDIRECT_MAX_TIMES + 1):
            if urlsplit(current).scheme not in DEFAULT_PORTS:
                return Fetched(url, reason="bad_url/scheme")
            robots = self._robots_for(current)
            if robots is not None and not robots.can_fetch(current, self.agent):
                return Fetched(url, reason="robots")
            status, headers, body = self._get(current, crawl_settings.FLYWHEEL_IMAGE_MAXSIZE)
            if status in _REDIRECTS and headers.get("location"):
                current = urljoin(current, headers["location"])
                continue
            if status != 200:
                return Fetched(url, reason=f"http/{status}")
            return Fetched(url, data=body, final_url=current)
        return Fetched(url, reason="redirect/too_many")

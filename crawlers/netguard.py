"""The network guard against SSRF: an address policy, the downloader middleware and the DNS resolver that enforce it."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest
from scrapy.resolver import CachingThreadedResolver
from scrapy.utils.httpobj import urlparse_cached
from twisted.internet.base import ReactorBase
from twisted.internet.defer import Deferred
from twisted.internet.error import DNSLookupError

from crawlers.config import CrawlJob, format_origin

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud instance-metadata endpoints (AWS/GCP/Azure/OpenStack 169.254.169.254, AWS IPv6 fd00:ec2::254,
# Alibaba 100.100.100.200), from the providers' documentation. Named apart so a refusal says what it saved.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)


class BlockedAddressError(IgnoreRequest):
    """A request refused because its host is, or resolves to, an address the crawl may not reach."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"SSRF guard refused {url}: {reason}")
        self.reason = reason


# RFC 6052 prefix lengths a NAT64 operator may use inside the local-use prefix 64:ff9b:1::/48 (RFC 8215);
# the well-known prefix 64:ff9b::/96 is always /96.
_NAT64_WKP = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # RFC 2765 (SIIT)


def _v4(bits: int) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(bits & 0xFFFFFFFF)


def _nat64_local_candidates(value: int) -> list[ipaddress.IPv4Address]:
    """The IPv4 address an RFC 6052 /48, /56, /64 or /96 prefix would embed (bits 64-71 are always skipped)."""
    return [
        _v4(((value >> 64) & 0xFFFF) << 16 | (value >> 40) & 0xFFFF),  # /48: bits 48-63, then 72-87
        _v4(((value >> 64) & 0xFF) << 24 | (value >> 32) & 0xFFFFFF),  # /56: bits 56-63, then 72-95
        _v4(value >> 24),  # /64: bits 72-103
        _v4(value),  # /96: bits 96-127
    ]


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 transition form carries, which is where its traffic really goes.

    IPv4-mapped ::ffff:0:0/96, IPv4-translated ::ffff:0:0:0/96, IPv4-compatible ::/96 (but :: and ::1),
    6to4 2002::/16, Teredo 2001::/32 (server and un-XOR-ed client), NAT64 64:ff9b::/96 and 64:ff9b:1::/48
    (every RFC 6052 placement), and ISATAP interface ids ([02]00:5efe:a.b.c.d, RFC 5214) under any prefix.
    """
    value = int(address)
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address in _IPV4_TRANSLATED or (address in _IPV4_COMPATIBLE and value > 1):
        found.append(_v4(value))
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if address in _NAT64_WKP:
        found.append(_v4(value))
    elif address in _NAT64_LOCAL:
        found.extend(_nat64_local_candidates(value))
    # ISATAP: the interface id's upper half is 0000:5efe or 0200:5efe (the u/l and g bits may be set)
    if (value >> 32) & 0xFCFFFFFF == 0x00005EFE:
        found.append(_v4(value))
    return found


def classify_address(address: IPAddress) -> str | None:
    """The kind of non-public address `address` is ("loopback", "private", "metadata", ...); None if public.

    An IPv6 form that embeds an IPv4 address is judged by that address first (6to4 of 169.254.169.254 is
    "metadata"), and then as itself, so embedding never makes an address more reachable than it was.
    """
    if isinstance(address, ipaddress.IPv6Address):
        kinds = [kind for inner in embedded_ipv4(address) if (kind := classify_address(inner)) is not None]
        if kinds:  # several candidates (NAT64 local-use placements): a metadata one names the refusal
            return "metadata" if "metadata" in kinds else kinds[0]
        if address.ipv4_mapped is not None:
            return None  # a mapped public IPv4 address is that address
    if address in METADATA_ADDRESSES:
        return "metadata"
    for kind in ("loopback", "unspecified", "link_local", "multicast", "private", "reserved"):
        if getattr(address, f"is_{kind}"):
            return kind
    # what is left and still not global: shared CGNAT space 100.64/10 and the like
    return None if address.is_global else "non_global"


class AddressPolicy:
    """Which origins and addresses a crawl may reach: public ones, plus an explicit allow-list for private ones.

    `allowed_origins`: origins ("http://127.0.0.1:8765", crawlers.config.format_origin's spelling) that may
    resolve to anything: that scheme, host and port only, so allowing one loopback site opens no other port
    on the host. `allowed_networks`: CIDR networks whose private addresses may be reached on any port (an
    operator's setting, FLYWHEEL_ALLOWED_PRIVATE_NETWORKS; metadata addresses never are).
    """

    def __init__(self, allowed_origins: Iterable[str] = (), allowed_networks: Iterable[str] = ()) -> None:
        self.allowed_origins = set(allowed_origins)
        self.allowed_hosts = {urlsplit(o).hostname or "" for o in self.allowed_origins}
        self.allowed_networks = [ipaddress.ip_network(n.strip(), strict=False) for n in allowed_networks if n.strip()]

    @classmethod
    def from_crawler(cls, crawler: Any) -> AddressPolicy:
        """The policy of this crawl: the job's allow-list (crawlers.config), the project's allowed networks."""
        origins = CrawlJob.from_crawler(crawler).config.allowed_private_hosts or []
        return cls(origins, crawler.settings.getlist("FLYWHEEL_ALLOWED_PRIVATE_NETWORKS"))

    def origin_allowed(self, scheme: str, host: str, port: int) -> bool:
        return format_origin(scheme, host, port) in self.allowed_origins

    def host_allowed(self, host: str) -> bool:
        """Whether some allowed origin is on `host`: all the DNS resolver can tell (it sees no port)."""
        return host.lower().strip("[]").rstrip(".") in self.allowed_hosts

    def find_block_reason(self, host: str, addresses: Sequence[IPAddress]) -> str | None:
        """Why `host` (resolved to `addresses`) may not be reached, or None. Any one blocked address blocks it.

        Origins are not checked here: callers that know the port ask `origin_allowed` first.
        """
        if not addresses:
            return "no_address"
        for address in addresses:
            kind = classify_address(address)
            if kind is None:
                continue
            if kind != "metadata" and any(address in net for net in self.allowed_networks):
                continue
            return f"{kind} address {address}" + ("" if str(address) == host else f" (resolved from {host})")
        return None


def parse_ip(host: str) -> IPAddress | None:
    """`host` as an IP address when it is an IP literal (brackets allowed), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (A and AAAA), without blocking the event loop."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # scope ids ("fe80::1%eth0") are cut: the address decides, not the interface
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos))


class SsrfGuardMiddleware:
    """Downloader middleware: refuses requests whose host is, or resolves to, a non-public address.

    It runs on every request, so every redirect hop and robots.txt fetch is checked before any traffic
    is sent. Decisions are cached per host:port for the crawl; GuardedResolver re-checks the address the
    connection really uses, which closes the DNS-rebinding gap between this check and the connect.
    """

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.policy = AddressPolicy.from_crawler(crawler)
        self.dns_timeout = crawler.settings.getfloat("DNS_TIMEOUT")  # Scrapy's own lookup limit (default 60 s)
        self._decisions: dict[str, str | None] = {}

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> SsrfGuardMiddleware:
        return cls(crawler)

    async def process_request(self, request: Request) -> None:
        parts = urlparse_cached(request)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        key = f"{parts.scheme}://{host}:{port}"
        if key not in self._decisions:
            self._decisions[key] = await self._decide(parts.scheme, host, port)
        reason = self._decisions[key]
        if reason is None:
            return
        self.crawler.stats.inc_value(f"flywheel/ssrf_refused/{reason.split(' ', 1)[0]}")
        logger.warning("SSRF guard refused %s: %s", request.url, reason)
        raise BlockedAddressError(request.url, reason)

    async def _decide(self, scheme: str, host: str, port: int) -> str | None:
        if not host:
            return "no_host"
        if self.policy.origin_allowed(scheme, host, port):
            return None
        literal = parse_ip(host)
        if literal is not None:
            return self.policy.find_block_reason(host, [literal])
        try:
            addresses = await asyncio.wait_for(resolve_host(host, port), self.dns_timeout)
        except (OSError, UnicodeError, TimeoutError) as exc:
            # Not a policy decision: the downloader's own lookup fails the same way and is counted as a DNS error.
            logger.info("SSRF guard could not resolve %s (%s); the download will report it", host, exc)
            return None
        return self.policy.find_block_reason(host, addresses)


class GuardedResolver(CachingThreadedResolver):
    """Scrapy's default caching resolver, refusing names that resolve to addresses the AddressPolicy blocks.

    Set as TWISTED_DNS_RESOLVER: it sees the address the connection will use, after any DNS change
    since SsrfGuardMiddleware looked.
    """

    # Refusals by kind. Scrapy builds the resolver once per process, from the CrawlerProcess (no crawler
    # stats), and a crawl is one process (crawlers.run), so the pipeline adds these to the report at close.
    refusals: ClassVar[Counter[str]] = Counter()

    def __init__(self, reactor: ReactorBase, cache_size: int, timeout: float, policy: AddressPolicy) -> None:
        super().__init__(reactor, cache_size, timeout)
        self.policy = policy

    @classmethod
    def from_crawler(cls, crawler: Crawler, reactor: ReactorBase) -> GuardedResolver:
        cache_size = crawler.settings.getint("DNSCACHE_SIZE") if crawler.settings.getbool("DNSCACHE_ENABLED") else 0
        policy = AddressPolicy.from_crawler(crawler)
        return cls(reactor, cache_size, crawler.settings.getfloat("DNS_TIMEOUT"), policy)

    def getHostByName(self, name: str, timeout: Sequence[int] = ()) -> Deferred[str]:
        result = super().getHostByName(name, timeout)
        result.addCallback(self.check_address, name)
        return result

    def check_address(self, address: str, name: str) -> str:
        """`address` if the policy lets `name` reach it; raises DNSLookupError (no connection is made) if not."""
        if self.policy.host_allowed(name):
            return address
        ip = parse_ip(address)
        reason = self.policy.find_block_reason(name, [ip] if ip is not None else [])
        if reason is not None:
            logger.warning("SSRF guard (resolver) refused %s: %s", name, reason)
            GuardedResolver.refusals[reason.split(" ", 1)[0]] += 1
            raise DNSLookupError(f"SSRF guard refused {name}: {reason}")
        return address

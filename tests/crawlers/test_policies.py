"""The crawler's pure policies: URL canonical form and scope, content sniffing, the SSRF address policy, failures."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest
from scrapy import Request
from scrapy.exceptions import DownloadCancelledError, DownloadTimeoutError, IgnoreRequest
from scrapy.http import Response
from scrapy.spidermiddlewares.httperror import HttpError
from scrapy.utils.test import get_crawler
from twisted.internet.error import DNSLookupError

from crawlers.config import CrawlConfig, CrawlJob
from crawlers.content import looks_like_html, sniff_mime
from crawlers.netguard import AddressPolicy, BlockedAddressError, GuardedResolver, SsrfGuardMiddleware, classify_address
from crawlers.report import classify_failure, report_table
from crawlers.urls import UrlScope, canonicalize_url, find_trap_reason, url_template

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("HTTP://Example.COM:80/a/b?x=1#frag", "http://example.com/a/b?x=1"),
        ("https://example.com:443/", "https://example.com/"),
        ("https://example.com:8443", "https://example.com:8443/"),
        ("http://example.com/p?b=2&a=1&a=0", "http://example.com/p?a=1&a=0&b=2"),
        ("http://example.com/p?utm_source=x&id=3&gclid=abc&fbclid=z", "http://example.com/p?id=3"),
        ("http://user:secret@example.com/p", "http://example.com/p"),
        ("http://example.com/%7Euser/a%20b", "http://example.com/~user/a%20b"),
        ("http://example.com./x", "http://example.com/x"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("http://example.com/q?empty=&k=v", "http://example.com/q?empty=&k=v"),
    ],
)
def test_canonicalize_url(url: str, canonical: str) -> None:
    assert canonicalize_url(url) == canonical


def test_trailing_slash_policy_and_bad_urls() -> None:
    assert canonicalize_url("http://example.com/dir/") == "http://example.com/dir/"
    assert canonicalize_url("http://example.com/dir/", trailing_slash="strip") == "http://example.com/dir"
    assert canonicalize_url("http://example.com/", trailing_slash="strip") == "http://example.com/"
    for bad in ("ftp://example.com/", "mailto:a@b.c", "http:///nohost", "/relative"):
        with pytest.raises(ValueError):
            canonicalize_url(bad)
    with pytest.raises(ValueError, match="trailing_slash"):
        canonicalize_url("http://example.com/", trailing_slash="add")


def test_url_templates_and_traps() -> None:
    assert url_template("http://h/calendar/2026/11?day=3") == url_template("http://h/calendar/1999/01?day=30")
    assert url_template("http://h/a/1") != url_template("http://h/b/1")
    assert find_trap_reason("http://h/a/b/a/b/a/b/") == "repeated_segments"
    assert find_trap_reason("http://h/docs/v1/docs/") is None
    assert find_trap_reason("http://h/" + "x" * 3000) == "url_too_long"


def test_scope_patterns_and_template_budget() -> None:
    scope = UrlScope(include=[r"/blog/"], exclude=[r"\?replytocom=", r"/tag/"], max_per_template=2)
    assert scope.find_skip_reason("http://h/shop/1") == "not_included"
    assert scope.find_skip_reason("http://h/blog/tag/x") == "excluded"
    assert scope.find_skip_reason("http://h/blog/p?replytocom=4") == "excluded"
    assert scope.find_skip_reason("http://h/blog/1") is None
    assert scope.find_skip_reason("http://h/blog/1") is None  # the same URL counts once
    assert scope.find_skip_reason("http://h/blog/2") is None
    assert scope.find_skip_reason("http://h/blog/3") == "template_budget"
    assert scope.find_skip_reason("http://h/blog/a/b/a/b/a/") == "repeated_segments"


def test_sniffing() -> None:
    assert sniff_mime(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert sniff_mime(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert looks_like_html(b"  \n<!DOCTYPE html><html>")
    assert looks_like_html(b"\xef\xbb\xbf<html lang=en>")
    assert looks_like_html("<html>".encode("utf-16"))
    assert looks_like_html(b"<?xml version='1.0'?><!DOCTYPE html><html xmlns='http://www.w3.org/1999/xhtml'>")
    assert looks_like_html(b"<p>fragment")
    assert not looks_like_html(b'{"json": true}')
    assert not looks_like_html(b"<?xml version='1.0'?><rss><channel/></rss>")
    assert not looks_like_html(b"<bogus>")
    assert not looks_like_html(b"<html>\x00\x00binary")
    assert not looks_like_html(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.1", "private"),
        ("172.16.5.4", "private"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("169.254.1.1", "link_local"),
        ("fe80::1", "link_local"),
        ("100.64.0.1", "non_global"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("93.184.216.34", None),
        ("2606:4700::1111", None),
    ],
)
def test_classify_address(address: str, kind: str | None) -> None:
    assert classify_address(ipaddress.ip_address(address)) == kind


def _nat64_local(ipv4: str, prefix: int) -> str:
    """`ipv4` embedded in 64:ff9b:1::/48 as RFC 6052 places it under a /`prefix` (bits 64-71 stay zero)."""
    v, base = int(ipaddress.IPv4Address(ipv4)), int(ipaddress.IPv6Address("64:ff9b:1::"))
    placed = {
        48: (v >> 16) << 64 | (v & 0xFFFF) << 40,
        56: (v >> 24) << 64 | (v & 0xFFFFFF) << 32,
        64: v << 24,
        96: v,
    }[prefix]
    return str(ipaddress.IPv6Address(base | placed))


def _teredo(server: str, client: str) -> str:
    """A Teredo address (RFC 4380): 2001:0:<server>:<flags>:<port ^ ffff>:<client ^ ffffffff>."""
    s, c = int(ipaddress.IPv4Address(server)), int(ipaddress.IPv4Address(client))
    return str(ipaddress.IPv6Address(0x20010000 << 96 | s << 64 | 0x8000 << 48 | 0x63BF << 32 | (c ^ 0xFFFFFFFF)))


# Every IPv6 form that carries an IPv4 address, spelled several ways, around each address the guard must refuse.
EMBEDDED_FORMS = {
    "mapped": ["::ffff:{v4}", "::ffff:{hex}", "0:0:0:0:0:ffff:{hex}"],
    "translated": ["::ffff:0:{v4}", "::ffff:0:{hex}"],
    "compatible": ["::{v4}", "::{hex}"],
    "6to4": ["2002:{hex}::", "2002:{hex}:1::1", "2002:{hex}:ffff:ffff:ffff:ffff:ffff", "2002:{HEX}::"],
    "nat64": ["64:ff9b::{v4}", "64:ff9b::{hex}", "64:ff9b:0:0:0:0:{hex}"],
    "isatap": ["fe80::5efe:{v4}", "2606:4700::5efe:{hex}", "2606:4700::200:5efe:{hex}", "2001:db8::300:5efe:{v4}"],
}
EMBEDDED_TARGETS = {"169.254.169.254": "metadata", "127.0.0.1": "loopback", "10.1.2.3": "private"}


def _spellings(v4: str) -> list[str]:
    packed = ipaddress.IPv4Address(v4).packed
    hex_ = f"{packed[0] << 8 | packed[1]:x}:{packed[2] << 8 | packed[3]:x}"
    forms = [f.format(v4=v4, hex=hex_, HEX=hex_.upper()) for spellings in EMBEDDED_FORMS.values() for f in spellings]
    forms += [_nat64_local(v4, prefix) for prefix in (48, 56, 64, 96)]
    forms += [_teredo("65.54.227.120", v4)]
    return forms


@pytest.mark.parametrize(("v4", "kind"), EMBEDDED_TARGETS.items())
def test_ipv6_forms_are_judged_by_the_ipv4_address_they_embed(v4: str, kind: str) -> None:
    for form in _spellings(v4):
        address = ipaddress.ip_address(form)
        if not str(address).startswith("64:ff9b:1:"):
            assert classify_address(address) == kind, form
        else:  # local-use NAT64 reads under four prefix lengths: always refused, named metadata if any reading is
            assert classify_address(address) == "metadata" if kind == "metadata" else classify_address(address), form


def test_embedding_a_public_ipv4_address_opens_nothing_new() -> None:
    ip = ipaddress.ip_address
    assert classify_address(ip("2002:5db8:d822::")) is None  # 6to4 of 93.184.216.34: a public address
    assert classify_address(ip("2606:4700::200:5efe:5db8:d822")) is None  # ISATAP id under a public prefix
    assert classify_address(ip("::ffff:93.184.216.34")) is None
    # forms that are not globally reachable themselves stay refused whatever they carry
    assert classify_address(ip(_teredo("65.54.227.120", "93.184.216.34"))) is not None
    assert classify_address(ip("fe80::5efe:93.184.216.34")) == "link_local"
    assert classify_address(ip("64:ff9b:1::5db8:d822")) is not None


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://[2002:a9fe:a9fe::]/latest/meta-data/", "metadata"),
        ("http://[2002:A9FE:A9FE::1]:80/", "metadata"),
        ("http://[64:ff9b::169.254.169.254]/", "metadata"),
        ("http://[::ffff:0:a9fe:a9fe]/", "metadata"),
        ("http://[2606:4700::200:5efe:169.254.169.254]/", "metadata"),
        (f"http://[{_teredo('65.54.227.120', '169.254.169.254')}]/", "metadata"),
        ("http://[2002:7f00:1::]:8765/", "loopback"),
        ("http://[::127.0.0.1]:8765/", "loopback"),
        # IPv4 spelled in hex, octal, short or as one integer: getaddrinfo reads them as inet_aton does
        ("http://0xa9.0xfe.0xa9.0xfe/", "metadata"),
        ("http://2852039166/", "metadata"),
        ("http://0251.0376.0251.0376/", "metadata"),
        ("http://0x7f.1/", "loopback"),
        ("http://0177.0.0.1:8765/", "loopback"),
        ("http://127.1:8765/", "loopback"),
        ("http://0x7f000001:8765/", "loopback"),
        ("http://017700000001:8765/", "loopback"),
        ("http://0/", "unspecified"),
        ("http://10.1/", "private"),
    ],
)
def test_the_guard_refuses_every_spelling(url: str, kind: str) -> None:
    # the allow-list names 127.0.0.1:8765 itself: other spellings of that address are still refused
    reason = _decide(url, ["http://127.0.0.1:8765"])
    assert reason is not None and reason.startswith(kind), (url, reason)


def test_address_policy_allow_lists() -> None:
    ip = ipaddress.ip_address
    closed = AddressPolicy()
    assert closed.find_block_reason("127.0.0.1", [ip("127.0.0.1")]) == "loopback address 127.0.0.1"
    assert closed.find_block_reason("public.example", [ip("93.184.216.34")]) is None
    # one private address among public ones is enough to refuse (a round-robin rebinding trick)
    assert "private" in closed.find_block_reason("mixed.example", [ip("93.184.216.34"), ip("10.0.0.5")])
    by_net = AddressPolicy(allowed_networks=["127.0.0.0/8", "0.0.0.0/0"])
    assert by_net.find_block_reason("localhost", [ip("127.0.0.2")]) is None
    # metadata endpoints are never opened by a network, however wide
    assert by_net.find_block_reason("evil.example", [ip("169.254.169.254")]).startswith("metadata")


def _decide(url: str, allowed: list[str] | None = None, **settings: object) -> str | None:
    """The guard's decision on `url` under the allow-list `allowed` (None = let through); nothing is sent anywhere."""
    config = CrawlConfig(start_url="http://127.0.0.1:8765/", allowed_private_hosts=allowed)
    job = CrawlJob(config=config, crawl_run="r", output_dir="/nonexistent")
    crawler = get_crawler(settings_dict={CrawlJob.SETTING: job.to_setting(), **settings})
    guard = SsrfGuardMiddleware.from_crawler(crawler)
    try:
        asyncio.run(guard.process_request(Request(url)))
    except BlockedAddressError as exc:
        return exc.reason
    return None


def test_guard_middleware_decisions() -> None:
    assert _decide("http://[::1]:8080/") == "loopback address ::1"
    assert _decide("http://[::ffff:169.254.169.254]/").startswith("metadata")
    assert _decide("http://169.254.169.254/latest/meta-data/").startswith("metadata")
    assert _decide("http://10.0.0.1/").startswith("private")
    # numeric host spellings resolve (locally, by getaddrinfo) to loopback and are caught
    assert _decide("http://2130706433/").startswith("loopback address 127.0.0.1")
    assert _decide("http://localhost:9/").startswith("loopback")
    assert _decide("http://93.184.216.34/") is None  # a public literal: allowed (and not fetched here)
    allowed = ["127.0.0.1"]  # a bare host: the start URL's origin, http://127.0.0.1:8765
    assert _decide("http://127.0.0.1:8765/", allowed) is None
    assert _decide("http://127.0.0.1:8765/other/page?q=1", allowed) is None
    # the origin, not the host: another port or scheme of the same host stays closed
    assert _decide("http://127.0.0.1:8766/", allowed) == "loopback address 127.0.0.1"
    assert _decide("http://127.0.0.1/", allowed) == "loopback address 127.0.0.1"
    assert _decide("https://127.0.0.1:8765/", allowed) == "loopback address 127.0.0.1"
    assert _decide("http://127.0.0.1:4200/", ["http://127.0.0.1:4200"]) is None  # an explicit origin
    assert _decide("http://[::1]:8765/", ["http://[::1]:8765"]) is None
    assert _decide("http://[::1]:8766/", ["http://[::1]:8765"]) == "loopback address ::1"
    assert _decide("http://[::1]:8765/", allowed) is not None
    assert _decide("http://localhost:8765/", allowed) is not None
    assert _decide("http://localhost:8765/", FLYWHEEL_ALLOWED_PRIVATE_NETWORKS="127.0.0.0/8,::1/128") is None


def test_guarded_resolver_refuses_blocked_answers() -> None:
    resolver = GuardedResolver.__new__(GuardedResolver)  # only the check; no reactor, no lookup
    resolver.policy = AddressPolicy(allowed_origins=["http://demo.local:8080"])
    assert resolver.check_address("93.184.216.34", "public.example") == "93.184.216.34"
    assert resolver.check_address("127.0.0.1", "demo.local") == "127.0.0.1"
    with pytest.raises(DNSLookupError, match=r"SSRF guard refused rebind\.example: loopback"):
        resolver.check_address("127.0.0.1", "rebind.example")


def test_classify_failure() -> None:
    response = Response("http://h/x", status=404)
    assert classify_failure(HttpError(response, "Ignoring non-200 response")) == "http/404"
    assert classify_failure(IgnoreRequest("max redirections reached")) == "redirect/too_many"
    assert classify_failure(DownloadTimeoutError("Getting x took longer than 1 seconds.")) == "timeout"
    assert classify_failure(DownloadCancelledError("")) == "size/too_large"
    assert classify_failure(DNSLookupError("no results for hostname lookup: x")) == "dns"
    assert classify_failure(IgnoreRequest("Forbidden by robots.txt")) is None
    assert classify_failure(BlockedAddressError("http://10.0.0.1/", "private address 10.0.0.1")) is None
    assert classify_failure(ValueError("odd")) == "download/ValueError"


def test_report_table_rows() -> None:
    report = {"finish_reason": "finished", "pages": 3, "errors": {"timeout": 1}, "bytes": {"pages": 10}}
    rows = report_table(report)
    assert {"figure": "errors/timeout", "value": 1} in rows
    assert rows[0] == {"figure": "finish_reason", "value": "finished"}

"""URL policy: canonical form (one page, one URL), crawl scope patterns and crawler-trap detection."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

# Query parameters that identify a campaign or a click, never the content: Google Analytics (utm_*),
# Google/Microsoft/Facebook/Mailchimp/HubSpot click ids, and Matomo/Piwik campaign tags. The list is
# the union of the defaults of the ClearURLs and Firefox "query stripping" lists for these vendors.
TRACKING_PARAMS: frozenset[str] = frozenset(
    {
        "gclid",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "fbclid",
        "mc_cid",
        "mc_eid",
        "_hsenc",
        "_hsmi",
        "igshid",
        "yclid",
        "twclid",
        "ref_src",
    }
)
TRACKING_PREFIXES: tuple[str, ...] = ("utm_", "pk_", "mtm_")
DEFAULT_PORTS = {"http": 80, "https": 443}
TRAILING_SLASH_POLICIES = ("keep", "strip")

# Longest URL handled: Scrapy's URLLENGTH_LIMIT default (2083, the old Internet Explorer limit).
MAX_URL_LENGTH = 2083
# A path segment seen this often in one URL is a relative-link loop (/a/b/a/b/a/...), not a page; 3 is
# the smallest count that never fires on ordinary paths like /docs/v1/docs/ (two repeats).
MAX_SEGMENT_REPEATS = 3
_DIGITS = re.compile(r"\d+")


def canonicalize_url(url: str, *, trailing_slash: str = "keep") -> str:
    """The canonical form of an absolute http(s) URL, so one page has one URL.

    Lower-cases scheme and host, drops default ports, userinfo (credentials never travel with a URL),
    the fragment and tracking parameters, sorts the query by key (keeping repeated keys in order),
    and normalises percent-escapes. `trailing_slash` is "keep" (servers may serve /a and /a/
    differently) or "strip" (drop it from every path but "/"). Raises ValueError for non-http(s) URLs.
    """
    if trailing_slash not in TRAILING_SLASH_POLICIES:
        raise ValueError(f"trailing_slash must be one of {TRAILING_SLASH_POLICIES}, got {trailing_slash!r}")
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"not an absolute http(s) URL: {url!r}")
    host = parts.hostname.lower().rstrip(".")
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = parts.port
    netloc = host if port is None or port == DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = quote(unquote(parts.path), safe="/%:@!$&'()*+,;=~-._") or "/"
    if trailing_slash == "strip" and len(path) > 1:
        path = path.rstrip("/") or "/"
    query_pairs = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k.lower() not in TRACKING_PARAMS and not k.lower().startswith(TRACKING_PREFIXES)
    ]
    query_pairs.sort(key=lambda kv: kv[0])  # stable: repeated keys keep their order
    query = urlencode(query_pairs, quote_via=quote, safe="/:@!$'()*,;~-._")
    return urlunsplit((scheme, netloc, path, query, ""))


def url_template(url: str) -> str:
    """The URL with every run of digits replaced by "N" and query values dropped: its page family.

    /calendar/2026/11 and /calendar/2031/04 share the template /calendar/N/N, so a calendar that links
    one month further forever is one family, and a per-family page budget bounds it.
    """
    parts = urlsplit(url)
    keys = sorted({k for k, _ in parse_qsl(parts.query, keep_blank_values=True)})
    template = _DIGITS.sub("N", parts.path)
    return f"{parts.netloc}{template}" + ("?" + "&".join(keys) if keys else "")


def find_trap_reason(url: str) -> str | None:
    """Why `url` looks like a crawler trap ("url_too_long", "repeated_segments"), or None."""
    if len(url) > MAX_URL_LENGTH:
        return "url_too_long"
    segments = [s for s in urlsplit(url).path.split("/") if s]
    if segments and max(Counter(segments).values()) >= MAX_SEGMENT_REPEATS:
        return "repeated_segments"
    return None


@dataclass
class UrlScope:
    """Which page URLs a crawl follows: include/exclude regexes, trap checks and a budget per URL template.

    `include`: if given, a URL must match one (re.search); `exclude`: a URL matching any is skipped.
    `max_per_template`: pages followed per `url_template` family (0 = no limit).
    """

    include: Iterable[str] = ()
    exclude: Iterable[str] = ()
    max_per_template: int = 0
    _include: list[re.Pattern[str]] = field(init=False)
    _exclude: list[re.Pattern[str]] = field(init=False)
    _families: Counter[str] = field(init=False, default_factory=Counter)
    _counted: set[str] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self._include = [re.compile(p) for p in self.include]
        self._exclude = [re.compile(p) for p in self.exclude]

    def find_skip_reason(self, url: str) -> str | None:
        """Why a page URL is out of scope ("excluded", "not_included", a trap reason), or None to follow it.

        A URL counts once against its template's budget, however often it is linked.
        """
        if self._include and not any(p.search(url) for p in self._include):
            return "not_included"
        if any(p.search(url) for p in self._exclude):
            return "excluded"
        trap = find_trap_reason(url)
        if trap:
            return trap
        if self.max_per_template and url not in self._counted:
            family = url_template(url)
            if self._families[family] >= self.max_per_template:
                return "template_budget"
            self._families[family] += 1
            self._counted.add(url)
        return None

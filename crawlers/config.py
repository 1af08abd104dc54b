"""The crawl config: one model of what a crawl fetches, handed whole to the Scrapy child and read back in one place."""

from __future__ import annotations

from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from crawlers.urls import DEFAULT_PORTS


def parse_origin(entry: str, *, default_scheme: str, default_port: int) -> str:
    """`entry` ("http://127.0.0.1:8765", or a bare host) as an origin "scheme://host:port", port always written.

    A bare host ("127.0.0.1", "[::1]", "demo.local") gets `default_scheme` and `default_port`: those of the
    start URL, so allow-listing the demo's host opens the demo's own port and no other.
    """
    text = entry.strip()
    if not text:
        raise ValueError("an empty allow-list entry")
    if "://" not in text:
        if _is_bare_host(text):
            host = text if text.startswith("[") or ":" not in text else f"[{text}]"
            text = f"{default_scheme}://{host}:{default_port}"
        else:
            text = f"{default_scheme}://{text}"
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"allow-list entry {entry!r} is not an http(s) origin such as http://127.0.0.1:8765")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"allow-list entry {entry!r} must be an origin (scheme://host:port), with no path or user")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError as exc:
        raise ValueError(f"allow-list entry {entry!r} has a bad port") from exc
    return format_origin(scheme, parts.hostname, port)


def format_origin(scheme: str, host: str, port: int) -> str:
    """The one spelling of an origin that the allow-list and the guard compare: lower case, port always written."""
    host = host.lower().strip("[]").rstrip(".")
    return f"{scheme.lower()}://{f'[{host}]' if ':' in host else host}:{port}"


def _is_bare_host(text: str) -> bool:
    """A host with no port: a name, an IPv4 literal, or a bracketed / bare IPv6 literal."""
    if text.startswith("["):
        return text.endswith("]")
    return text.count(":") != 1  # "host:port" has one colon; a bare IPv6 literal has several


class CrawlConfig(BaseModel):
    """What to crawl and how much of it: everything a user sets per crawl (per source)."""

    model_config = ConfigDict(extra="forbid")

    start_url: str = Field(..., description="First page; the crawl stays on its host unless allowed_domains says more.")
    source: str = Field("site", description="Name of this source, stored on every record.")
    allowed_domains: list[str] | None = Field(None, description="Hosts the crawl may visit (no ports).")
    max_pages: int = Field(2000, ge=1, description="Page budget of one crawl.")
    max_bytes: int | None = Field(None, gt=0, description="Byte budget of one crawl (pages and images).")
    include: list[str] | None = Field(None, description="Regexes a page URL must match to be crawled.")
    exclude: list[str] | None = Field(None, description="Regexes that keep matching page URLs out.")
    sitemap_urls: list[str] | None = Field(None, description="Sitemaps or feeds to seed the crawl with.")
    allowed_private_hosts: list[str] | None = Field(
        None,
        description="Origins (scheme://host:port) on private or loopback addresses the crawl may reach (local demo "
        "and test sites only), e.g. http://127.0.0.1:8765; a bare host means that host on the start URL's scheme and "
        "port. Other ports of the same host, and everything else on such addresses, are refused after DNS resolution "
        "and on every redirect.",
    )
    incremental: bool = Field(
        False, description="Remember ETag / Last-Modified / content fingerprints: a recrawl writes only what changed."
    )
    timeout_s: float = Field(1800, gt=0, description="Wall-clock limit of one crawl.")
    fetch_images: bool = Field(True, description="Fetch the images pages show; false crawls text only.")
    max_pages_per_template: int = Field(
        1000,
        ge=0,
        description="Pages followed per URL family (digits -> N): bounds calendars and other endless page "
        "generators (0 = no limit).",
    )
    trailing_slash: Literal["keep", "strip"] = Field(
        "keep", description="keep: /a and /a/ are different pages (safe); strip: they are one page."
    )

    @field_validator("start_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"start_url must be an http(s) URL, got {value!r}")
        return value

    @model_validator(mode="after")
    def _origins(self) -> CrawlConfig:
        """Allow-list entries become origins once, here, so the guard compares one spelling."""
        if self.allowed_private_hosts:
            parts = urlsplit(self.start_url)
            scheme = parts.scheme.lower()
            port = parts.port or DEFAULT_PORTS[scheme]
            origins = [parse_origin(e, default_scheme=scheme, default_port=port) for e in self.allowed_private_hosts]
            self.allowed_private_hosts = list(dict.fromkeys(origins))
        return self


class CrawlJob(BaseModel):
    """One run of a CrawlConfig: the config plus this run's own values. crawlers.run hands it to the Scrapy child
    as one setting (FLYWHEEL_CRAWL_JOB, JSON); the spider, the item pipeline and the SSRF guard read it back
    with `CrawlJob.from_crawler`.
    """

    model_config = ConfigDict(extra="forbid")

    SETTING: ClassVar[str] = "FLYWHEEL_CRAWL_JOB"

    config: CrawlConfig
    crawl_run: str = Field(..., min_length=1, description="Name of this run, stored on every record.")
    output_dir: str = Field(..., min_length=1, description="Folder (or data-root URL) the raw shards go to.")
    state_path: str | None = Field(None, description="Incremental state file (SQLite); None crawls everything.")

    def to_setting(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_settings(cls, settings: Any) -> CrawlJob:
        raw = settings.get(cls.SETTING)
        if not raw:
            # An error, not a default: a crawl with no job has nowhere to write and no allow-list to obey.
            raise ValueError(f"set {cls.SETTING} to a CrawlJob as JSON (crawlers.run.crawl does)")
        return cls.model_validate(raw) if isinstance(raw, dict) else cls.model_validate_json(raw)

    @classmethod
    def from_crawler(cls, crawler: Any) -> CrawlJob:
        """The job of this crawl (or of the CrawlerProcess: the DNS resolver is built from it), parsed once."""
        cached = getattr(crawler, "_flywheel_job", None)
        if cached is None:
            cached = cls.from_settings(crawler.settings)
            crawler._flywheel_job = cached
        return cached

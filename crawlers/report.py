"""The crawl report: failures sorted into kinds, `_report.json`, Prefect artifact rows, and the log format."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from scrapy import Spider
from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadCancelledError,
    DownloadConnectionRefusedError,
    DownloadFailedError,
    DownloadTimeoutError,
    IgnoreRequest,
    ResponseDataLossError,
)
from scrapy.logformatter import LogFormatter
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.internet.error import DNSLookupError

from crawlers.netguard import BlockedAddressError

# Failures other components already count under their own stats key (and the report shows them there).
_COUNTED_ELSEWHERE = ("Forbidden by robots.txt", "Filtered offsite request")


def classify_failure(exc: BaseException) -> str | None:
    """The error kind of a failed request ("http/404", "timeout", "size/too_large", ...).

    None for refusals already counted elsewhere: robots.txt, offsite, the SSRF guard's own counter.
    """
    message = str(exc)
    if isinstance(exc, BlockedAddressError) or message.startswith(_COUNTED_ELSEWHERE):
        return None
    if isinstance(exc, HttpError):
        return f"http/{exc.response.status}"
    if isinstance(exc, IgnoreRequest):
        if "max redirections" in message:
            return "redirect/too_many"
        if "during decompression" in message:
            return "size/decompressed_too_large"
        return "ignored"
    if isinstance(exc, DownloadTimeoutError):
        return "timeout"
    if isinstance(exc, DownloadCancelledError):
        # Scrapy 2.19's HTTP handler cancels a download only for DOWNLOAD_MAXSIZE (announced or streamed)
        return "size/too_large"
    if isinstance(exc, CannotResolveHostError | DNSLookupError):
        # GuardedResolver's refusals end here too (Twisted drops their message); it counts them in ssrf_refused
        return "dns"
    if isinstance(exc, DownloadConnectionRefusedError):
        return "connection/refused"
    if isinstance(exc, ResponseDataLossError):
        return "data_loss"
    if isinstance(exc, DownloadFailedError):
        return "connection/failed"
    return f"download/{type(exc).__name__}"


def _by_prefix(stats: Mapping[str, Any], prefix: str) -> dict[str, int]:
    return dict(sorted((k[len(prefix) :], v) for k, v in stats.items() if k.startswith(prefix)))


def build_report(stats: Mapping[str, Any], counts: Mapping[str, int], **identity: Any) -> dict[str, Any]:
    """The `_report.json` dict from Scrapy's stats and the pipeline's record `counts`; `identity` goes in as is."""
    status_codes = _by_prefix(stats, "downloader/response_status_count/")
    errors = _by_prefix(stats, "flywheel/errors/")
    errors.update({f"spider/{k}": v for k, v in _by_prefix(stats, "spider_exceptions/").items()})
    ssrf = _by_prefix(stats, "flywheel/ssrf_refused/")
    robots = stats.get("robotstxt/forbidden", 0)
    return {
        **identity,
        "pages": counts.get("pages", 0),
        "images": counts.get("images", 0),
        "records": counts.get("pages", 0) + counts.get("images", 0),
        "bytes": {
            "pages": counts.get("page_bytes", 0),
            "images": counts.get("image_bytes", 0),
            "downloaded": stats.get("downloader/response_bytes", 0),
        },
        "mime": {k.split("/", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("mime/")},
        "requests": stats.get("downloader/request_count", 0),
        "responses": stats.get("downloader/response_count", 0),
        "status_codes": status_codes,
        "robots_denied": robots,
        "robots_forbidden": robots,  # the walking skeleton's name for robots_denied, kept for its readers
        "crawl_delays": _by_prefix(stats, "flywheel/crawl_delay/"),
        "throttle": {
            "raised": _by_prefix(stats, "flywheel/throttle/raised/"),
            "backoff": _by_prefix(stats, "flywheel/throttle/backoff/"),
            "max_delay_ms": stats.get("flywheel/throttle/max_delay_ms", 0),
            "mean_delay_ms": round(
                stats.get("flywheel/throttle/delay_total_ms", 0)
                / max(1, stats.get("flywheel/throttle/adjustments", 0)),
                2,
            ),
            "delay_ms": _by_prefix(stats, "flywheel/throttle/delay_ms/"),
        },
        "ssrf_refused": ssrf,
        "offsite_filtered": stats.get("offsite/filtered", 0),
        "duplicates_filtered": stats.get("dupefilter/filtered", 0),
        "out_of_scope": _by_prefix(stats, "flywheel/out_of_scope/"),
        "skipped": _by_prefix(stats, "flywheel/skipped/"),
        "unchanged": _by_prefix(stats, "flywheel/unchanged/"),
        "corrected": _by_prefix(stats, "flywheel/corrected/"),
        "pages_over_budget": stats.get("flywheel/pages_over_budget", 0),
        "non_html_skipped": stats.get("flywheel/skipped/not_html", 0),
        "seeds": _by_prefix(stats, "flywheel/seeds/"),
        "errors": errors,
    }


def nothing_fetched(report: Mapping[str, Any], start_url: str) -> str | None:
    """Why a crawl fetched nothing, in one line; None when it stored a page or an image, or found them unchanged.

    The reasons, first match wins: the SSRF guard refused the start URL (its categories, e.g. loopback),
    robots.txt forbids it, the host did not answer (the error kinds, e.g. connection/refused or dns), it
    answered with HTTP errors only, or it answered with nothing a crawl keeps.
    """
    if report.get("pages", 0) or report.get("images", 0) or any((report.get("unchanged") or {}).values()):
        return None
    refused = report.get("ssrf_refused") or {}
    errors = {k: v for k, v in (report.get("errors") or {}).items() if not k.startswith("http/")}
    statuses = report.get("status_codes") or {}
    if refused:
        kinds = ", ".join(sorted(refused))
        return f"the SSRF guard refused {start_url} ({kinds}); allow it with --allow-private-host if it is yours"
    if report.get("robots_denied", 0):
        return f"robots.txt of the host forbids {start_url}"
    if errors:
        kinds = ", ".join(f"{k} x{v}" if v > 1 else k for k, v in sorted(errors.items()))
        return f"the host of {start_url} did not answer ({kinds})"
    if statuses and all(not str(code).startswith("2") for code in statuses):
        return f"{start_url} answered only HTTP {', '.join(sorted(str(c) for c in statuses))}"
    return f"{start_url} answered, but with no HTML page or image the crawl keeps"


def report_table(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The report as rows {"figure", "value"} for `prefect.artifacts.create_table_artifact(table=...)`."""
    rows: list[dict[str, Any]] = []
    for key in ("finish_reason", "pages", "images", "requests", "robots_denied", "offsite_filtered"):
        if key in report:
            rows.append({"figure": key, "value": report[key]})
    for group in ("bytes", "status_codes", "errors", "ssrf_refused", "out_of_scope", "skipped", "unchanged", "seeds"):
        for name, value in (report.get(group) or {}).items():
            rows.append({"figure": f"{group}/{name}", "value": value})
    return rows


class UrlOnlyLogFormatter(LogFormatter):
    """Scrapy's log formatter, naming items by kind and URL instead of dumping them (bodies, texts) into the log.

    Its per-response and per-item DEBUG records ("Crawled", "Scraped") are not built at all when the crawl logs at
    INFO or above: Scrapy's handler would drop them, after the reactor built them (~1.5 % of its CPU in cProfile).
    """

    def __init__(self, debug: bool = True) -> None:
        super().__init__()
        self.debug = debug

    @classmethod
    def from_crawler(cls, crawler: Any) -> UrlOnlyLogFormatter:
        settings = crawler.settings
        level = settings.get("LOG_LEVEL", "DEBUG")
        level = level if isinstance(level, int) else logging.getLevelName(str(level).upper())
        return cls(debug=settings.getbool("LOG_ENABLED", True) and isinstance(level, int) and level <= logging.DEBUG)

    def crawled(self, request: Any, response: Any, spider: Spider) -> dict[str, Any] | None:  # type: ignore[override]
        return super().crawled(request, response, spider) if self.debug else None

    def scraped(self, item: Any, response: Any, spider: Spider) -> dict[str, Any] | None:  # type: ignore[override]
        if not self.debug:
            return None
        result = dict(super().scraped(item, response, spider))
        result["msg"] = "Scraped %(kind)s %(url)s"
        result["args"] = {"kind": type(item).__name__, "url": getattr(item, "url", "?")}
        return result

    def dropped(self, item: Any, exception: BaseException, response: Any, spider: Spider) -> dict[str, Any]:
        result = dict(super().dropped(item, exception, response, spider))
        result["msg"] = "Dropped %(kind)s %(url)s: %(exception)s"
        result["args"] = {"kind": type(item).__name__, "url": getattr(item, "url", "?"), "exception": exception}
        return result

    def item_error(self, item: Any, exception: BaseException, response: Any, spider: Spider) -> dict[str, Any]:
        result = dict(super().item_error(item, exception, response, spider))
        result["msg"] = "Error processing %(kind)s %(url)s"
        result["args"] = {"kind": type(item).__name__, "url": getattr(item, "url", "?")}
        return result

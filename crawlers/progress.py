"""Live crawl progress: the counts the crawl child writes to `.progress.json` and the line the parent shows."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# A dot name: crawl_to_root uploads a raw folder's files but not these, and crawlers.run removes it at the end.
PROGRESS_NAME = ".progress.json"
PROGRESS_KEYS = ("pages", "images", "refused", "errors", "bytes")


def progress_counts(report: Mapping[str, Any]) -> dict[str, int]:
    """The progress figures of a crawl report (crawlers.report.build_report): pages and images stored, requests
    refused (robots.txt, the SSRF guard, offsite), failed requests (every error kind) and bytes downloaded."""
    refused = report.get("robots_denied", 0) + sum((report.get("ssrf_refused") or {}).values())
    return {
        "pages": report.get("pages", 0),
        "images": report.get("images", 0),
        "refused": refused + report.get("offsite_filtered", 0),
        "errors": sum((report.get("errors") or {}).values()),
        "bytes": (report.get("bytes") or {}).get("downloaded", 0),
    }


def write_progress(path: Path, counts: Mapping[str, int]) -> None:
    """Write `counts` to `path` atomically (a temporary name renamed over it): a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(dict(counts)))
    os.replace(tmp, path)


def read_progress(path: Path) -> dict[str, int] | None:
    """The counts at `path`, or None when the crawl has written none yet."""
    try:
        counts = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return {key: int(counts.get(key, 0)) for key in PROGRESS_KEYS}


def describe_progress(counts: Mapping[str, int]) -> str:
    """One line: `crawl: 120 pages, 340 images, 3 refused, 2 errors, 2.1 MB`."""
    return (
        f"crawl: {counts['pages']} pages, {counts['images']} images, {counts['refused']} refused, "
        f"{counts['errors']} errors, {counts['bytes'] / 1e6:.1f} MB"
    )

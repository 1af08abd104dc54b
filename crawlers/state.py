"""The incremental crawl state: per URL, the validators (ETag, Last-Modified) and fingerprint of what was last kept.

One SQLite file per source, passed by the caller (`state_path`). The item pipeline records a URL only after
its record is in a written shard, so a crash never marks as kept what was not; a page also remembers its
links and images, so a page answered 304 Not Modified still leads the crawl to everything below it.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS url_state (
    url TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    etag TEXT,
    last_modified TEXT,
    fingerprint TEXT NOT NULL,
    links TEXT,
    images TEXT,
    fetched_at TEXT NOT NULL
)
"""


@dataclass
class UrlState:
    """What the last kept fetch of one URL looked like."""

    url: str
    kind: str
    fingerprint: str
    fetched_at: str
    etag: str | None = None
    last_modified: str | None = None
    links: list[str] = field(default_factory=list)
    # [url, alt_text, caption] per image the page showed
    images: list[list[str | None]] = field(default_factory=list)

    def conditional_headers(self) -> dict[str, str]:
        """If-None-Match / If-Modified-Since for a revalidating request (RFC 9110 §13.1)."""
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers


def _row(s: UrlState) -> tuple[Any, ...]:
    """The url_state row of `s`, in column order."""
    links, images = json.dumps(s.links), json.dumps(s.images)
    return (s.url, s.kind, s.etag, s.last_modified, s.fingerprint, links, images, s.fetched_at)


class CrawlState:
    """A SQLite-backed map url -> UrlState; `path=None` keeps nothing (every crawl is a full crawl)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self._db: sqlite3.Connection | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path)
            self._db.execute(_SCHEMA)
            self._db.commit()

    @property
    def enabled(self) -> bool:
        return self._db is not None

    def get(self, url: str) -> UrlState | None:
        if self._db is None:
            return None
        row = self._db.execute(
            "SELECT url, kind, fingerprint, fetched_at, etag, last_modified, links, images FROM url_state WHERE url=?",
            (url,),
        ).fetchone()
        if row is None:
            return None
        return UrlState(*row[:6], links=json.loads(row[6] or "[]"), images=json.loads(row[7] or "[]"))

    def put_many(self, states: list[UrlState]) -> None:
        """Record these URLs as kept, in one transaction."""
        if self._db is None or not states:
            return
        rows = [_row(s) for s in states]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO url_state VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def count(self) -> int:
        if self._db is None:
            return 0
        return int(self._db.execute("SELECT COUNT(*) FROM url_state").fetchone()[0])

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

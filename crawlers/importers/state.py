"""The import state: per file of a source, the size, mtime and record id last imported, so a re-import skips it.

One SQLite file per source. Rows learnt during an import wait in `pending` (on disk, so a walk of 10^6 files
holds none in memory) and move to `files` in one transaction once the import's raw folder is complete: an
import that dies leaves the state as it was, and its rerun imports the same files again.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

_TABLES = """
CREATE TABLE IF NOT EXISTS files (locator TEXT PRIMARY KEY, size INTEGER, mtime REAL, record_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pending (locator TEXT PRIMARY KEY, size INTEGER, mtime REAL, record_id TEXT NOT NULL);
"""
# Rows per pending transaction: one commit per shard would do too, but this keeps a long walk's journal small.
_BATCH = 1000


class ImportState:
    """A map locator -> (size, mtime, record_id) of what earlier imports of one source kept."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path)
        self._db.executescript(_TABLES)
        with self._db:
            self._db.execute("DELETE FROM pending")  # what an import that died had learnt
        self._queued: list[tuple] = []

    def _row(self, locator: str) -> tuple | None:
        return self._db.execute("SELECT size, mtime, record_id FROM files WHERE locator=?", (locator,)).fetchone()

    def unchanged(self, locator: str, size: int | None, mtime: float | None) -> bool:
        """True when `locator` was imported with this size and mtime (for a URL, which has neither: at all)."""
        row = self._row(locator)
        if row is None:
            return False
        if size is None and mtime is None:
            return True
        return row[0] == size and row[1] is not None and mtime is not None and abs(row[1] - mtime) < 1e-6

    def same_content(self, locator: str, record_id: str) -> bool:
        """True when `locator` was last imported with this content (a touched file whose bytes did not change)."""
        row = self._row(locator)
        return row is not None and row[2] == record_id

    def learn(self, locator: str, size: int | None, mtime: float | None, record_id: str) -> None:
        """Remember `locator` as imported with this content, once `commit` is called."""
        self._queued.append((locator, size, mtime, record_id))
        if len(self._queued) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._queued:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO pending VALUES (?, ?, ?, ?)", self._queued)
            self._queued = []

    def commit(self) -> int:
        """Move everything learnt into the state, in one transaction; the number of files learnt."""
        self._flush()
        with self._db:
            learnt = self._db.execute("SELECT COUNT(*) FROM pending").fetchone()[0]
            self._db.execute("INSERT OR REPLACE INTO files SELECT * FROM pending")
            self._db.execute("DELETE FROM pending")
        return int(learnt)

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM files").fetchone()[0])

    def close(self) -> None:
        self._db.close()

"""The import state: per file of a source, the size, mtime, record id and labels last imported, so a re-import
skips it, or writes only its labels when those alone changed.

One SQLite file per source. Rows learnt during an import wait in `pending` (on disk, so a walk of 10^6 files
holds none in memory) and move to `files` in one transaction once the import's raw folder is complete: an
import that dies leaves the state as it was, and its rerun imports the same files again.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import NamedTuple

_TABLES = """
CREATE TABLE IF NOT EXISTS files (locator TEXT PRIMARY KEY, size INTEGER, mtime REAL, record_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pending (locator TEXT PRIMARY KEY, size INTEGER, mtime REAL, record_id TEXT NOT NULL);
"""
# Added later: a digest of the labels and boxes the source gave the file (NULL in states written before it).
_LABEL_COLUMN = "label_key"
# Rows per pending transaction: one commit per shard would do too, but this keeps a long walk's journal small.
_BATCH = 1000


class StoredFile(NamedTuple):
    """One file as the state has it."""

    size: int | None
    mtime: float | None
    record_id: str
    label_key: str | None

    def same_stat(self, size: int | None, mtime: float | None) -> bool:
        """This size and mtime (for a URL, which has neither: any)."""
        if size is None and mtime is None:
            return True
        return self.size == size and self.mtime is not None and mtime is not None and abs(self.mtime - mtime) < 1e-6


class ImportState:
    """A map locator -> (size, mtime, record_id) of what earlier imports of one source kept."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path)
        self._db.executescript(_TABLES)
        for table in ("files", "pending"):
            columns = [row[1] for row in self._db.execute(f"PRAGMA table_info({table})")]
            if _LABEL_COLUMN not in columns:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {_LABEL_COLUMN} TEXT")
        self._db.execute("CREATE INDEX IF NOT EXISTS files_by_record ON files (record_id)")
        with self._db:
            self._db.execute("DELETE FROM pending")  # what an import that died had learnt
        self._queued: list[tuple] = []

    def stored(self, locator: str) -> StoredFile | None:
        """What the state holds for `locator`, or None (one query: a walk of 10^6 files makes 10^6 of them)."""
        query = "SELECT size, mtime, record_id, label_key FROM files WHERE locator=?"
        row = self._db.execute(query, (locator,)).fetchone()
        return None if row is None else StoredFile(*row)

    def unchanged(self, locator: str, size: int | None, mtime: float | None) -> bool:
        """True when `locator` was imported with this size and mtime (for a URL, which has neither: at all)."""
        stored = self.stored(locator)
        return stored is not None and stored.same_stat(size, mtime)

    def labels_of(self, record_id: str, stored: StoredFile | None = None) -> tuple[bool, str | None]:
        """(known, label key): whether this content was imported before, at the locator `stored` describes or,
        moved or copied, at another locator of the source, and the label key it was given there (None: before
        keys were kept)."""
        if stored is not None and stored.record_id == record_id:
            return True, stored.label_key
        query = "SELECT label_key FROM files WHERE record_id=? ORDER BY rowid DESC LIMIT 1"
        found = self._db.execute(query, (record_id,)).fetchone()
        return found is not None, None if found is None else found[0]

    def learn(
        self, locator: str, size: int | None, mtime: float | None, record_id: str, label_key: str | None = None
    ) -> None:
        """Remember `locator` as imported with this content and labels, once `commit` is called."""
        self._queued.append((locator, size, mtime, record_id, label_key))
        if len(self._queued) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._queued:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO pending VALUES (?, ?, ?, ?, ?)", self._queued)
            self._queued = []

    def commit(self) -> int:
        """Move everything learnt into the state, in one transaction; the number of files learnt."""
        self._flush()
        with self._db:
            learnt = self._db.execute("SELECT COUNT(*) FROM pending").fetchone()[0]
            columns = f"locator, size, mtime, record_id, {_LABEL_COLUMN}"
            self._db.execute(f"INSERT OR REPLACE INTO files ({columns}) SELECT {columns} FROM pending")
            self._db.execute("DELETE FROM pending")
        return int(learnt)

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM files").fetchone()[0])

    def close(self) -> None:
        self._db.close()

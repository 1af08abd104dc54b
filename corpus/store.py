"""The Parquet store: a data root (local folder or fsspec URL) with atomic writes and JSON sidecars."""

from __future__ import annotations

import json
import posixpath
import uuid
from collections.abc import Iterable
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from corpus.schema import RECORD_SCHEMA, conform


class DataRoot:
    """A folder of Flywheel data, addressed by POSIX relative paths (`curated/run/kept`).

    `url` may be a local path or any fsspec URL (`s3://bucket/prefix`). Every write goes to a
    temporary name beside its target and is renamed into place, so a reader never sees half a file.
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.fs, base = fsspec.core.url_to_fs(str(url), **(storage_options or {}))
        self.is_local = isinstance(self.fs, LocalFileSystem)
        self.base = base.rstrip("/") if base != "/" else base
        self.url = str(url)
        if self.is_local:
            self.fs.makedirs(self.base, exist_ok=True)

    def __repr__(self) -> str:
        return f"DataRoot({self.url!r})"

    def path(self, *parts: str) -> str:
        """Absolute path in the root's filesystem for a relative path."""
        return posixpath.join(self.base, *[p.strip("/") for p in parts if p])

    def exists(self, relpath: str) -> bool:
        return self.fs.exists(self.path(relpath))

    def list(self, relpath: str, suffix: str = "") -> list[str]:
        """Relative paths of the files directly under `relpath` ending in `suffix`, sorted."""
        full = self.path(relpath)
        if not self.fs.exists(full):
            return []
        names = [p for p in self.fs.ls(full, detail=False) if p.endswith(suffix)]
        prefix = self.base.rstrip("/") + "/"
        return sorted(name[len(prefix) :] if name.startswith(prefix) else name for name in names)

    def list_dirs(self, relpath: str) -> list[str]:
        """Names of the folders directly under `relpath`, sorted."""
        full = self.path(relpath)
        if not self.fs.exists(full):
            return []
        entries = self.fs.ls(full, detail=True)
        return sorted(posixpath.basename(e["name"].rstrip("/")) for e in entries if e["type"] == "directory")

    def _write_atomic(self, relpath: str, data: bytes) -> None:
        target = self.path(relpath)
        parent = posixpath.dirname(target)
        self.fs.makedirs(parent, exist_ok=True)
        tmp = posixpath.join(parent, f".tmp-{uuid.uuid4().hex}-{posixpath.basename(target)}")
        with self.fs.open(tmp, "wb") as fh:
            fh.write(data)
        self.fs.mv(tmp, target)

    def write_bytes(self, relpath: str, data: bytes) -> None:
        self._write_atomic(relpath, data)

    def read_bytes(self, relpath: str) -> bytes:
        with self.fs.open(self.path(relpath), "rb") as fh:
            return fh.read()

    def write_json(self, relpath: str, obj: Any) -> None:
        self._write_atomic(relpath, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())

    def read_json(self, relpath: str) -> Any:
        return json.loads(self.read_bytes(relpath))

    def write_table(self, relpath: str, table: pa.Table, row_group_size: int = 1024) -> None:
        """Write one Parquet file (zstd) atomically."""
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd", row_group_size=row_group_size)
        self._write_atomic(relpath, sink.getvalue().to_pybytes())

    def read_table(self, relpath: str, schema: pa.Schema | None = RECORD_SCHEMA) -> pa.Table:
        """Read one Parquet file or every `*.parquet` under a folder, conformed to `schema`."""
        full = self.path(relpath)
        files = [relpath] if full.endswith(".parquet") else self.list(relpath, ".parquet")
        tables = [pq.read_table(self.path(f), filesystem=self.fs) for f in files]
        if schema is None:
            return pa.concat_tables(tables, promote_options="default") if tables else pa.table({})
        if not tables:
            return schema.empty_table()
        return pa.concat_tables([conform(t, schema) for t in tables])

    def read_tables(self, relpaths: Iterable[str], schema: pa.Schema = RECORD_SCHEMA) -> pa.Table:
        tables = [self.read_table(p, schema) for p in relpaths]
        return pa.concat_tables(tables) if tables else schema.empty_table()

    def fingerprint(self, relpaths: Iterable[str]) -> list[list]:
        """A cheap identity of some inputs: (path, size) of every file under them, for run keys."""
        out = []
        for relpath in relpaths:
            full = self.path(relpath)
            if not self.fs.exists(full):
                out.append([relpath, None])
                continue
            files = [full] if self.fs.isfile(full) else sorted(self.fs.find(full))
            for f in files:
                if posixpath.basename(f).startswith((".tmp-", "_")):
                    continue
                out.append([f[len(self.base) :], self.fs.size(f)])
        return out

    def local_path(self, relpath: str = "") -> str:
        """The OS path of `relpath`; only for local roots (services that need a folder on disk)."""
        if not self.is_local:
            raise ValueError(f"{self.url} is not a local folder")
        return self.path(relpath)

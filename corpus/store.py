"""The Parquet store: a data root (local folder or fsspec URL) with atomic writes and JSON sidecars."""

from __future__ import annotations

import errno
import json
import os
import posixpath
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from corpus.schema import RECORD_SCHEMA, conform
from corpus.settings import Settings, get_settings

# Object stores publish an object only once its upload completes (a PUT, or a completed multipart upload),
# so a reader never sees half of one; there a temp name + rename (a server-side copy + delete) buys nothing.
_OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "memory"}
# Where publish_folder claims a folder on object storage: <parent>/.claims/<name>, outside the folder, so a
# published folder holds exactly its files.
CLAIMS_DIR = ".claims"


class DataRoot:
    """A folder of Flywheel data, addressed by POSIX relative paths (`curated/run/kept`).

    `url` may be a local path or any fsspec URL (`s3://bucket/prefix`). Every write goes to a
    temporary name beside its target and is renamed into place, so a reader never sees half a file.
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.fs, base = fsspec.core.url_to_fs(str(url), **(storage_options or {}))
        self.is_local = isinstance(self.fs, LocalFileSystem)
        protocols = {self.fs.protocol} if isinstance(self.fs.protocol, str) else set(self.fs.protocol)
        self._whole_object_writes = bool(protocols & _OBJECT_STORES)
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

    def uri(self, relpath: str = "") -> str:
        """The full URL of `relpath` with its protocol (`s3://bucket/prefix/media/x.jpg`, or a local path)."""
        return self.path(relpath) if self.is_local else self.fs.unstrip_protocol(self.path(relpath))

    def _place(self, relpath: str, write: Callable[[str], None]) -> None:
        """Have `write(path)` create the file at `relpath` so that no reader sees it half written: on a
        folder, under a temporary name beside it, then renamed into place; on an object store, directly."""
        target = self.path(relpath)
        if self._whole_object_writes:
            write(target)
            return
        parent = posixpath.dirname(target)
        self.fs.makedirs(parent, exist_ok=True)
        tmp = posixpath.join(parent, f".tmp-{uuid.uuid4().hex}-{posixpath.basename(target)}")
        write(tmp)
        self.fs.mv(tmp, target)

    def write_bytes(self, relpath: str, data: bytes) -> None:
        self._place(relpath, lambda path: self.fs.pipe_file(path, data))

    def put_file(self, local: str, relpath: str) -> None:
        """Upload (or copy) the local file `local` to `relpath`, as atomically as `write_bytes`."""
        self._place(relpath, lambda path: self.fs.put_file(str(local), path))

    def get_file(self, relpath: str, local: str) -> None:
        """Download `relpath` to the local file `local`."""
        self.fs.get_file(self.path(relpath), str(local))

    def read_bytes(self, relpath: str) -> bytes:
        with self.fs.open(self.path(relpath), "rb") as fh:
            return fh.read()

    def publish_folder(self, relpath: str, files: dict[str, bytes], marker: str, *, read_only: bool = True) -> None:
        """Create the folder `relpath` holding `files` (name -> bytes), the completion marker `marker` (one of
        them) written last, so that a reader who sees the marker sees every file. FileExistsError when the
        folder is already there: a published folder is never overwritten.

        Local root: the files go under a temporary sibling folder, made read-only with `read_only`, which
        rename(2) moves into place atomically (it fails onto a non-empty folder, so of two concurrent
        publishers exactly one wins). Object storage has no atomic rename (a folder move is a copy per
        object): publishing is refused when the marker already exists, the folder is claimed with a
        conditional create of <parent>/.claims/<name> (of two concurrent publishers exactly one gets it),
        and the files are written straight into the target, the marker last; `read_only` does not apply.
        A claim outlives a publisher that dies before its marker: taken_names lists it, so the next
        publisher picks another name.
        """
        if marker not in files:
            raise ValueError(f"the marker {marker!r} must be one of the files {sorted(files)}")
        bad = sorted(n for n in files if not n or "/" in n or n.startswith("."))
        if bad:
            raise ValueError(f"file names must be plain names, got {bad}")
        order = [n for n in files if n != marker] + [marker]
        if not self.is_local:
            if self.exists(posixpath.join(relpath, marker)):
                raise FileExistsError(f"{self.uri(relpath)} already exists")
            self._claim(relpath)
            for name in order:
                self.fs.pipe_file(self.path(relpath, name), files[name])
            return
        target = self.path(relpath)
        if os.path.exists(target):
            raise FileExistsError(f"{target} already exists")
        parent, base = posixpath.split(target)
        tmp = posixpath.join(parent, f".tmp-{base}-{uuid.uuid4().hex}")
        os.makedirs(tmp)
        try:
            for name in order:
                path = posixpath.join(tmp, name)
                with open(path, "wb") as fh:
                    fh.write(files[name])
                if read_only:
                    os.chmod(path, 0o444)
            try:
                os.rename(tmp, target)
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    raise FileExistsError(f"{target} already exists") from exc
                raise
        except BaseException:
            if os.path.exists(tmp):
                self.fs.rm(tmp, recursive=True)
            raise

    def _claim(self, relpath: str) -> None:
        """Take folder `relpath` for this publisher with an exclusive create of its claim object, holding a
        unique token; FileExistsError when another has it."""
        parent, name = posixpath.split(relpath.strip("/"))
        claim = posixpath.join(parent, CLAIMS_DIR, name)
        try:
            self.create_exclusive(claim, uuid.uuid4().hex.encode())
        except FileExistsError as exc:
            raise FileExistsError(f"{self.uri(relpath)} is claimed by another publisher ({claim})") from exc

    def create_exclusive(self, relpath: str, data: bytes) -> None:
        """Write `relpath` only if nothing is there yet: of concurrent writers exactly one succeeds, the others
        get FileExistsError; a reader never sees the file half written.

        Local root: the bytes go to a temporary file that link(2) places (it fails when the name exists).
        Object storage: a conditional create (S3 If-None-Match: *), whose content is read back, since a store
        that ignored the condition would let the last writer win: then only one writer reads its own bytes
        (so `data` should hold something unique to the writer, such as a token, when writers may race).
        """
        target = self.path(relpath)
        if self.is_local:
            parent = posixpath.dirname(target)
            os.makedirs(parent, exist_ok=True)
            tmp = posixpath.join(parent, f".tmp-{uuid.uuid4().hex}-{posixpath.basename(target)}")
            with open(tmp, "wb") as fh:
                fh.write(data)
            try:
                os.link(tmp, target)
            finally:
                os.unlink(tmp)
            return
        self.fs.pipe_file(target, data, mode="create")
        with self.fs.open(target, "rb") as fh:
            if fh.read() != data:
                raise FileExistsError(f"{self.uri(relpath)} already exists")

    def remove(self, relpath: str) -> bool:
        """Delete the file `relpath`; False when it was not there."""
        try:
            self.fs.rm_file(self.path(relpath))
        except FileNotFoundError:
            return False
        return True

    def taken_names(self, relpath: str) -> list[str]:
        """Names under `relpath` that publish_folder would refuse: its folders and, on object storage, the
        folders claimed there (by a publisher still writing, or one that died), sorted."""
        names = set(self.list_dirs(relpath)) - {CLAIMS_DIR}
        if not self.is_local:
            names |= {posixpath.basename(p) for p in self.list(posixpath.join(relpath, CLAIMS_DIR))}
        return sorted(names)

    def write_json(self, relpath: str, obj: Any) -> None:
        self.write_bytes(relpath, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())

    def read_json(self, relpath: str) -> Any:
        return json.loads(self.read_bytes(relpath))

    def write_table(self, relpath: str, table: pa.Table, row_group_size: int = 1024) -> None:
        """Write one Parquet file (zstd) atomically."""
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd", row_group_size=row_group_size)
        self.write_bytes(relpath, sink.getvalue().to_pybytes())

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
            # One listing with sizes, not a size request per file (a HEAD each on an object store).
            files = {full: self.fs.info(full)} if self.fs.isfile(full) else self.fs.find(full, detail=True)
            for f in sorted(files):
                if posixpath.basename(f).startswith((".tmp-", "_")):
                    continue
                out.append([f[len(self.base) :], files[f]["size"]])
        return out

    def local_path(self, relpath: str = "") -> str:
        """The OS path of `relpath`; only for local roots (services that need a folder on disk)."""
        if not self.is_local:
            raise ValueError(f"{self.url} is not a local folder")
        return self.path(relpath)


def s3_storage_options(settings: Settings) -> dict[str, Any]:
    """fsspec (s3fs) options for an s3:// data root from settings: only what is set, so that unset values
    fall back to boto's own chain (AWS_* variables, ~/.aws, instance roles)."""
    options: dict[str, Any] = {}
    if settings.s3_endpoint_url:
        options["endpoint_url"] = settings.s3_endpoint_url
    if settings.s3_access_key_id:
        options["key"] = settings.s3_access_key_id
    if settings.s3_secret_access_key:
        options["secret"] = settings.s3_secret_access_key.get_secret_value()
    if settings.s3_region:
        options["client_kwargs"] = {"region_name": settings.s3_region}
    # Several processes (flow runs, workers, the crawler) write one root: a listing cached in this
    # process would hide their files, e.g. a model version taken by another trainer.
    options["use_listings_cache"] = False
    return options


def open_data_root(url: str | None = None, settings: Settings | None = None) -> DataRoot:
    """The data root at `url` (default: settings' data_root), with the s3 endpoint and credentials from
    settings when it is an s3:// URL. The secret goes to the filesystem object only, never into `url`."""
    settings = settings or get_settings()
    url = str(url or settings.data_root)
    protocol = url.split("://", 1)[0] if "://" in url else "file"
    return DataRoot(url, s3_storage_options(settings) if protocol in ("s3", "s3a") else None)

"""Exporting a release: export_release writes a verified release in one format, checked and idempotent.

An export folder holds the format's files and, written last, export.json: the format, the release (dataset,
version, release id, manifest digest), the options, rows per split and every file with its SHA-256. Re-running
the same export finds a matching export.json and writes nothing; any other export into the folder is refused.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from corpus.exports.box_formats import (
    BOX_FORMATS,
    check_box_files,
    has_boxes,
    select_box_rows,
    with_box_labels,
    write_coco,
    write_yolo,
)
from corpus.exports.formats import (
    DEFAULT_SHARD_BYTES,
    FORMATS,
    SPLIT_NAMES,
    Files,
    write_csv,
    write_hf,
    write_imagefolder,
    write_webdataset,
)
from corpus.exports.rows import ExportRows, select_rows
from corpus.exports.text_formats import (
    TEXT_FORMATS,
    check_text_format,
    release_texts,
    select_text_rows,
    split_file_name,
    texts_in,
    write_text_files,
)
from corpus.releases.versions import Release, load_release, sha256_hex
from corpus.settings import Settings
from corpus.store import DataRoot, open_data_root
from corpus.tasks import task_of

EXPORT_FILE = "export.json"
# On object storage files land in place one by one; this marker says whose unfinished export a folder holds,
# so that only the same export may write over it.
PENDING_FILE = ".export-pending.json"
EXPORT_FORMAT = 1
# Every format export_release writes: the class-label ones (formats.py) and, for releases with boxes, coco and yolo.
TEXT_ONLY_FORMATS = tuple(f for f in TEXT_FORMATS if f not in (*FORMATS, *BOX_FORMATS))
EXPORT_FORMATS = (*FORMATS, *BOX_FORMATS, *TEXT_ONLY_FORMATS)


class ExportError(Exception):
    """An export folder holds another export or foreign files, or written bytes do not match the release."""


# Formats whose layout holds one class per image (a folder, a .cls index): a label set does not fit them.
ONE_LABEL_FORMATS = ("imagefolder", "webdataset")


def default_export_path(dataset: str, version: str, fmt: str) -> str:
    """Where an export goes under the data root when no destination is given: exports/<dataset>/<vN>/<format>."""
    return posixpath.join("exports", dataset, version, fmt)


def _destination(
    root: DataRoot, release: Release, fmt: str, dest: str | DataRoot | None, settings: Settings | None
) -> tuple[DataRoot, str]:
    if dest is None:
        return root, default_export_path(release.manifest["dataset"], release.version, fmt)
    if isinstance(dest, DataRoot):
        return dest, ""
    # open_data_root gives an s3:// destination the data root's endpoint and credentials from settings.
    return open_data_root(str(dest), settings), ""


def _identity(release: Release, fmt: str, options: dict[str, Any]) -> dict[str, Any]:
    m = release.manifest
    return {
        "format": fmt,
        "dataset": m["dataset"],
        "version": release.version,
        "release_id": m["release_id"],
        "manifest_digest": m["manifest_digest"],
        "options": options,
    }


def _same(found: dict[str, Any], identity: dict[str, Any]) -> bool:
    return all(found.get(k) == v for k, v in identity.items())


def _describe(found: dict[str, Any]) -> str:
    return f"a {found.get('format')} export of {found.get('dataset')}/{found.get('version')}"


def _files_of(fmt: str, rows: ExportRows, manifest: dict, shard_bytes: int) -> Files:
    if fmt == "imagefolder":
        return write_imagefolder(rows)
    if fmt == "csv":
        return write_csv(rows)
    if fmt == "hf":
        return write_hf(rows, manifest)
    if fmt == "coco":
        return write_coco(rows, manifest)
    if fmt == "yolo":
        return write_yolo(rows, manifest)
    return write_webdataset(rows, shard_bytes)


def _images_in(fmt: str, path: str, data: bytes) -> Iterator[tuple[str, bytes]]:
    """(record_id, image bytes) of every image inside one written file, as its consumer would find them."""
    stem = posixpath.basename(path).split(".")[0]
    if fmt in ("imagefolder", "csv", *BOX_FORMATS) and not path.endswith((".csv", ".json", ".txt", ".yaml")):
        yield stem, data
    elif fmt == "hf" and path.endswith(".parquet"):
        table = pq.read_table(pa.BufferReader(data), columns=["record_id", "image"])
        for rid, image in zip(table.column("record_id").to_pylist(), table.column("image").to_pylist(), strict=True):
            yield rid, image["bytes"]
    elif fmt == "webdataset":
        for name, start, size in _tar_members(path, data):
            key, _, ext = name.partition(".")
            if ext not in ("cls", "json"):
                # a bytes slice (a memcpy), not a memoryview: bytes == memoryview compares ~10x slower
                yield key, data[start : start + size]


_TAR_BLOCK = 512


def _tar_members(path: str, data: bytes) -> Iterator[tuple[str, int, int]]:
    """(name, offset of its data, size) of every member of an ustar archive, read as tarfile reads it (each
    header's checksum checked, regular files only, up to the end-of-archive block), without tarfile's
    per-member objects: they were 1.3 s of a 3,000-image export's 1.9 s of checks. ExportError names the shard."""
    pos = 0
    while pos + _TAR_BLOCK <= len(data):
        header = data[pos : pos + _TAR_BLOCK]
        if not header.strip(b"\0"):
            return  # the end-of-archive block
        try:
            recorded, size = int(header[148:156].strip(b"\0 "), 8), int(header[124:136].strip(b"\0 ") or b"0", 8)
        except ValueError as exc:
            raise ExportError(f"{path}: an unreadable tar header at byte {pos}") from exc
        if recorded != sum(header[:148]) + 8 * 32 + sum(header[156:]) or header[156:157] not in (b"0", b"\0"):
            raise ExportError(f"{path}: a bad tar header (checksum or member type) at byte {pos}")
        name = header[:100].rstrip(b"\0").decode()
        prefix = header[345:500].rstrip(b"\0").decode()
        start = pos + _TAR_BLOCK
        if start + size > len(data):
            raise ExportError(f"{path}: member {name} runs past the end of the shard")
        yield (f"{prefix}/{name}" if prefix else name), start, size
        pos = start + -(-size // _TAR_BLOCK) * _TAR_BLOCK
    raise ExportError(f"{path}: the shard ends without tar's end-of-archive block")


def _release_images(rows: ExportRows) -> dict[str, bytes]:
    """record_id -> image bytes of every row the export writes."""
    return {
        rid: img
        for table in rows.splits.values()
        for rid, img in zip(table.column("record_id").to_pylist(), table.column("image").to_pylist(), strict=True)
    }


def _split_name(fmt: str, split: str, text: bool) -> str:
    return split_file_name(fmt, split) if text else SPLIT_NAMES[fmt][split]


def _check_file(
    fmt: str, path: str, data: bytes, back: bytes, expected: dict, seen: set[str], *, text: bool = False
) -> None:
    """A file read `back` after writing must be the bytes written (whose SHA-256 export.json records), and the
    images (texts, for a text release) inside must be those of the release's rows, none twice (`seen` collects
    them)."""
    if back != data:  # a memcmp: the same proof as hashing the read-back bytes, at a fraction of the cost
        raise ExportError(f"{path} changed while it was written: its sha256 is not the one recorded")
    for rid, content in texts_in(fmt, path, back) if text else _images_in(fmt, path, back):
        if expected.get(rid) != content or rid in seen:
            raise ExportError(f"{path}: the {'text' if text else 'image'} of {rid} is not the release's (or twice)")
        seen.add(rid)


def _check_complete(fmt: str, rows: ExportRows, paths: list[str], expected: dict, seen: set[str], read: Any) -> None:
    """Every image of the release was found in the files; for box formats, the boxes read back are the release's."""
    if seen != set(expected):
        raise ExportError(f"{len(set(expected) - seen)} images of the release are missing from the export")
    if fmt in BOX_FORMATS:
        try:
            check_box_files(fmt, rows, paths, read)
        except (ValueError, KeyError) as exc:
            raise ExportError(f"the written boxes differ from the release's: {exc}") from exc


def _read_existing(target: DataRoot, rel: str, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The matching export.json already at the destination (None when the folder is free to write); ExportError
    when it holds another export or files that are no export's."""
    marker = posixpath.join(rel, EXPORT_FILE)
    if target.exists(marker):
        found = target.read_json(marker)
        if not _same(found, identity):
            raise ExportError(
                f"{target.uri(rel)} already holds {_describe(found)} ({found.get('format')}, release "
                f"{found.get('release_id')}); export {_describe(identity)} to another folder"
            )
        return found
    present = target.fs.find(target.path(rel)) if target.exists(rel) else []
    if not present:
        return None
    pending = posixpath.join(rel, PENDING_FILE)
    if not target.is_local and target.exists(pending) and _same(target.read_json(pending), identity):
        return None  # the same export died half way: write it again over its own files
    raise ExportError(f"{target.uri(rel)} holds files but no {EXPORT_FILE}; export into an empty or new folder")


class _LocalWriter:
    """Files go under a temporary sibling folder, renamed into place whole once export.json is in it."""

    def __init__(self, target: DataRoot, rel: str) -> None:
        self.final = target.path(rel)
        parent, base = posixpath.split(self.final.rstrip("/"))
        self.tmp = posixpath.join(parent, f".tmp-export-{base}-{uuid.uuid4().hex}")

    def write(self, path: str, data: bytes) -> None:
        full = posixpath.join(self.tmp, path)
        os.makedirs(posixpath.dirname(full), exist_ok=True)
        with open(full, "wb") as fh:
            fh.write(data)

    def read(self, path: str) -> bytes:
        with open(posixpath.join(self.tmp, path), "rb") as fh:
            return fh.read()

    def finish(self, manifest: bytes) -> None:
        self.write(EXPORT_FILE, manifest)
        if os.path.isdir(self.final):
            os.rmdir(self.final)  # empty (checked): rename(2) places a folder only where none is
        os.rename(self.tmp, self.final)

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


class _RemoteWriter:
    """Object storage: a pending marker first, then each file in place, export.json last, the marker removed."""

    def __init__(self, target: DataRoot, rel: str, identity: dict[str, Any]) -> None:
        self.target, self.rel = target, rel
        target.write_json(posixpath.join(rel, PENDING_FILE), identity)

    def write(self, path: str, data: bytes) -> None:
        self.target.write_bytes(posixpath.join(self.rel, path), data)

    def read(self, path: str) -> bytes:
        return self.target.read_bytes(posixpath.join(self.rel, path))

    def finish(self, manifest: bytes) -> None:
        self.write(EXPORT_FILE, manifest)
        self.target.remove(posixpath.join(self.rel, PENDING_FILE))

    def abort(self) -> None:
        pass  # the pending marker stays: the same export may write over what is there


def export_release(
    root: DataRoot,
    dataset: str,
    version: str | int,
    fmt: str,
    dest: str | DataRoot | None = None,
    *,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    signing_key: str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Export release `dataset`@`version` in format `fmt` (imagefolder, hf, webdataset, csv; coco, yolo for a
    release with boxes) to `dest` and return its export manifest (with "path" and "unchanged").

    `dest` is a local folder, any fsspec URL (s3:// gets the endpoint and keys of `settings`, as the data root
    does) or a DataRoot; default exports/<dataset>/<vN>/<fmt> under `root`. The release is loaded verified
    (manifest digest, signature with a key, every file's SHA-256); every written file is read back and every
    image in it compared with the release row's bytes before export.json is written, last. A destination
    already holding this export is left as it is ("unchanged": True); one holding anything else raises
    ExportError. `shard_bytes` bounds each webdataset shard.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; formats: {', '.join(EXPORT_FORMATS)}")
    if shard_bytes < 64 * 1024:
        raise ValueError(f"shard_bytes={shard_bytes} is too small: at least 64 KiB")
    release = load_release(root, dataset, version, signing_key=signing_key)
    text = task_of(release.manifest) == "text"
    if text:
        check_text_format(fmt)
    elif fmt in TEXT_ONLY_FORMATS:
        raise ValueError(f"{fmt} exports text releases only; {dataset}/{release.version} is not one")
    rows = select_text_rows(release) if text else select_rows(release)
    if not text and rows.multilabel and fmt in ONE_LABEL_FORMATS:
        raise ValueError(
            f"{dataset}@{release.version} is multi-label: {fmt} holds one class per image; export it as hf or csv"
        )
    if fmt in BOX_FORMATS:  # before the destination is opened: a release without boxes leaves no folder behind
        rows = select_box_rows(release, rows)
    elif fmt == "hf" and has_boxes(rows):  # a detection release: its boxes become the `objects` feature
        rows = with_box_labels(release, rows)
    target, rel = _destination(root, release, fmt, dest, settings)
    identity = _identity(release, fmt, {"shard_bytes": shard_bytes} if fmt == "webdataset" else {})
    found = _read_existing(target, rel, identity)
    if found is not None:
        return {**found, "path": target.uri(rel), "unchanged": True}
    writer = _LocalWriter(target, rel) if target.is_local else _RemoteWriter(target, rel, identity)
    files: dict[str, dict[str, Any]] = {}
    expected, seen = (release_texts(rows) if text else _release_images(rows)), set()
    try:
        # Each file is read back as soon as it is written, while its bytes are still in hand: one SHA-256 pass.
        written = write_text_files(fmt, rows, release.manifest) if text else None
        for path, data in written or _files_of(fmt, rows, release.manifest, shard_bytes):
            writer.write(path, data)
            files[path] = {"sha256": sha256_hex(data), "bytes": len(data)}
            _check_file(fmt, path, data, writer.read(path), expected, seen, text=text)
        _check_complete(fmt, rows, list(files), expected, seen, writer.read)
        manifest = {
            **identity,
            "export_format": EXPORT_FORMAT,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "labels": rows.labels,
            "splits": {_split_name(fmt, s, text): t.num_rows for s, t in rows.splits.items()},
            "skipped": rows.skipped,
            "files": dict(sorted(files.items())),
        }
        writer.finish(json.dumps(manifest, indent=2, sort_keys=True).encode())
    except BaseException:
        writer.abort()
        raise
    return {**manifest, "path": target.uri(rel), "unchanged": False}


def verify_export(target: DataRoot, rel: str = "") -> dict[str, Any]:
    """The export manifest of the export folder `rel`, after checking every listed file's SHA-256 and that no
    file was added; ExportError names the first difference."""
    try:
        manifest = target.read_json(posixpath.join(rel, EXPORT_FILE))
    except FileNotFoundError as exc:
        raise ExportError(f"{target.uri(rel)} has no {EXPORT_FILE}") from exc
    base = target.path(rel).rstrip("/") + "/"
    present = {p[len(base) :] for p in target.fs.find(target.path(rel))} - {EXPORT_FILE}
    extra = sorted(present - set(manifest["files"]))
    if extra:
        raise ExportError(f"{target.uri(rel)} holds files its {EXPORT_FILE} does not list: {extra[:5]}")
    for path, entry in manifest["files"].items():
        try:
            data = target.read_bytes(posixpath.join(rel, path))
        except FileNotFoundError as exc:
            raise ExportError(f"{path} is listed in {EXPORT_FILE} but missing") from exc
        if sha256_hex(data) != entry["sha256"]:
            raise ExportError(f"{path} was modified: its sha256 does not match {EXPORT_FILE}")
    return manifest

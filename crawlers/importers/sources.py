"""Import sources: what a source is (detected from its path), checked up front, and read as a stream of items."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec

from crawlers.importers import formats, label_exports
from crawlers.importers.config import ImportConfig
from crawlers.importers.items import ImportSourceError, Source, SourceItem, is_image_name

MANIFEST_SUFFIXES = frozenset({".csv", ".jsonl", ".ndjson", ".parquet"})


def walk_local(base: Path, *, class_folders: bool) -> Iterator[SourceItem]:
    """Every file under `base`, depth first, one directory listing open at a time (os.scandir streams it, so a
    folder of 10^6 files is never held as a list). `class_folders`: the label is the first folder below `base`."""
    stack = [base]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                    continue
                if not entry.is_file():
                    continue
                rel = Path(entry.path).relative_to(base)
                label = rel.parts[0] if class_folders and len(rel.parts) > 1 else None
                if not is_image_name(entry.name):
                    yield SourceItem(entry.path, skip="not_image")
                    continue
                stat = entry.stat()
                yield SourceItem(entry.path, size=stat.st_size, mtime=stat.st_mtime, label=label)


def walk_remote(fs: fsspec.AbstractFileSystem, prefix: str, *, class_folders: bool) -> Iterator[SourceItem]:
    """Every object under `prefix` of an fsspec filesystem, one "directory" listing at a time."""
    base = prefix.rstrip("/")
    for folder, _dirs, files in fs.walk(base, detail=True):
        for name, info in sorted(files.items()):
            path = info.get("name") or f"{folder}/{name}"
            rel = path[len(base) :].lstrip("/").split("/")
            url = fs.unstrip_protocol(path)
            if name.startswith(".") or not is_image_name(name):
                yield SourceItem(url, skip="not_image")
                continue
            modified = info.get("LastModified") or info.get("mtime")
            mtime = modified.timestamp() if hasattr(modified, "timestamp") else modified
            label = rel[0] if class_folders and len(rel) > 1 else None
            yield SourceItem(url, size=info.get("size"), mtime=mtime, label=label)


def _is_hf_folder(path: Path) -> bool:
    """dataset_info.json, or only Parquet files, a data/ folder of them and a README (the Hub's layout)."""
    if (path / "dataset_info.json").exists():
        return True
    with os.scandir(path) as entries:
        names = [e.name for e in entries if not e.name.startswith(".")]
    if not names or not all(n.endswith(".parquet") or n in ("data", "README.md") for n in names):
        return False
    return any(n.endswith(".parquet") for n in names) or next((path / "data").rglob("*.parquet"), None) is not None


def _is_imagefolder(path: Path) -> bool:
    """A folder holding only sub-folders (two or more): torchvision's ImageFolder layout."""
    with os.scandir(path) as entries:
        visible = [e for e in entries if not e.name.startswith(".")]
    return len(visible) >= 2 and all(e.is_dir() for e in visible)


def _json_kind(path: Path) -> str:
    """label-studio (a list of tasks with `data`) or coco (an object with `images`), read from the file."""
    try:
        with path.open("rb") as fh:
            doc = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ImportSourceError(f"{path}: cannot read as JSON: {exc}") from exc
    if isinstance(doc, list) and (not doc or (isinstance(doc[0], dict) and "data" in doc[0])):
        return "label-studio"
    if isinstance(doc, dict) and "images" in doc:
        return "coco"
    raise ImportSourceError(f"{path}: neither a Label Studio export (a list of tasks) nor COCO (no 'images' key)")


def detect_kind(cfg: ImportConfig) -> str:
    """The kind of `cfg.source` (cfg.kind unless auto); ImportSourceError if the path is missing."""
    if cfg.source.startswith(("s3://", "s3a://")):
        return "imagefolder" if cfg.kind == "imagefolder" else "folder"
    path = Path(cfg.source)
    if not path.exists():
        raise ImportSourceError(f"{cfg.source}: no such file or folder")
    if cfg.kind != "auto":
        return cfg.kind
    if path.is_dir():
        if label_exports.is_yolo_folder(path):  # before imagefolder: images/ and labels/ are two sub-folders
            return "yolo"
        if _is_hf_folder(path):
            return "hf"
        return "imagefolder" if _is_imagefolder(path) else "folder"
    suffix = path.suffix.lower()
    if suffix in MANIFEST_SUFFIXES:
        return "hf" if suffix == ".parquet" and _has_image_struct(path) else "manifest"
    if suffix == ".json":
        return _json_kind(path)
    raise ImportSourceError(f"{cfg.source}: not a folder, manifest (.csv, .jsonl, .parquet) or JSON export")


def _has_image_struct(path: Path) -> bool:
    return formats.find_image_column(formats.read_parquet_schema(path), {}) is not None


def open_source(cfg: ImportConfig, storage_options: dict[str, Any] | None = None) -> Source:
    """The checked source of `cfg`: every error that makes the whole import impossible is raised here, as one
    ImportSourceError line naming the file or column, before anything is written. An empty folder is found
    while importing (finding it would need a walk): the importer raises it then, having written nothing."""
    kind = detect_kind(cfg)
    if cfg.source.startswith(("s3://", "s3a://")):
        fs, prefix = fsspec.core.url_to_fs(cfg.source, **(storage_options or {}))
        if not fs.exists(prefix):
            raise ImportSourceError(f"{cfg.source}: no such prefix")
        return Source(kind, cfg.source, lambda: walk_remote(fs, prefix, class_folders=kind == "imagefolder"))
    path = Path(cfg.source)
    media_root = Path(cfg.media_root) if cfg.media_root else (path if path.is_dir() else path.parent)
    if kind in ("folder", "imagefolder"):
        if not path.is_dir():
            raise ImportSourceError(f"{cfg.source}: not a folder")
        return Source(kind, cfg.source, lambda: walk_local(path, class_folders=kind == "imagefolder"))
    readers = {
        "manifest": formats.open_manifest,
        "label-studio": label_exports.open_label_studio_export,
        "coco": label_exports.open_coco,
        "yolo": label_exports.open_yolo,
        "hf": formats.open_hf_parquet,
    }
    return Source(kind, cfg.source, readers[kind](path, media_root))


def check_source(cfg: ImportConfig, storage_options: dict[str, Any] | None = None) -> Source:
    """open_source, and ImportSourceError unless the source names at least one image: a missing path, an
    unreadable manifest, a manifest without a path or url column and an empty folder all fail here."""
    source = open_source(cfg, storage_options)
    if next((item for item in source.items() if item.skip is None), None) is None:
        raise ImportSourceError(f"{cfg.source}: no images found ({source.kind})")
    return source

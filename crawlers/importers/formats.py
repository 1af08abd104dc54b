"""Import file formats: manifests (CSV, JSONL, Parquet) and Hugging Face Parquet (tool exports: label_exports)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from crawlers.importers.items import ImportSourceError, SourceItem

PATH_COLUMNS = ("path", "file", "filepath", "file_path", "filename", "file_name", "image_path", "image")
URL_COLUMNS = ("url", "image_url", "uri", "src")
LABEL_COLUMNS = ("label", "class", "category", "label_name")
# Manifest columns that are record columns (corpus.schema.RECORD_SCHEMA); the rest go to the metadata side file.
RECORD_COLUMNS = ("caption", "alt_text", "title", "page_url", "context_text")
Items = Callable[[], Iterator[SourceItem]]
_BAD_ROW = "\0bad_row"  # a JSONL line that is not a JSON object: reported as a drop, not fatal


def resolve_reference(value: str, media_root: Path) -> str:
    """A manifest's or export's reference as a locator: URLs as they are, Label Studio's /data/local-files/?d=
    and /data/upload/ paths and relative paths under `media_root`, file:// URLs as paths."""
    value = value.strip()
    if value.startswith(("http://", "https://", "s3://", "s3a://")):
        return value
    if value.startswith("file://"):
        return unquote(urlsplit(value).path)
    if value.startswith("/data/local-files/"):
        return str(media_root / unquote(parse_qs(urlsplit(value).query).get("d", [""])[0]))
    if value.startswith("/data/upload/"):
        return str(media_root / "upload" / unquote(value.removeprefix("/data/upload/")))
    return value if os.path.isabs(value) else str(media_root / value)


def item_for(locator: str, **extra: Any) -> SourceItem:
    """A SourceItem for a resolved locator: a local file's size and mtime, or a refusal if it is not there."""
    if "://" in locator:
        return SourceItem(locator, **extra)
    try:
        stat = os.stat(locator)
    except OSError:
        return SourceItem(locator, refused="missing_file", **extra)
    return SourceItem(locator, size=stat.st_size, mtime=stat.st_mtime, **extra)


def _pick(names: Iterable[str], candidates: tuple[str, ...]) -> str | None:
    lowered = {n.lower(): n for n in names}
    return next((lowered[c] for c in candidates if c in lowered), None)


def _manifest_columns(path: Path, names: list[str]) -> tuple[str, str | None]:
    ref = _pick(names, URL_COLUMNS) or _pick(names, PATH_COLUMNS)
    if ref is None:
        wanted = ", ".join((*URL_COLUMNS, *PATH_COLUMNS))
        raise ImportSourceError(f"{path}: no path or url column (one of {wanted}); it has {', '.join(names)}")
    return ref, _pick(names, LABEL_COLUMNS)


def _row_item(row: dict[str, Any], ref: str, label: str | None, media_root: Path) -> SourceItem:
    if _BAD_ROW in row:
        return SourceItem(f"(manifest {row[_BAD_ROW]})", refused="bad_manifest_row")
    value = row.get(ref)
    if value is None or not str(value).strip():
        return SourceItem(f"(row without {ref})", refused=f"empty_{ref}")
    fields = {k: str(row[k]) for k in RECORD_COLUMNS if row.get(k) is not None}
    metadata = {k: v for k, v in row.items() if k not in (ref, label, *RECORD_COLUMNS) and v is not None}
    tag = row.get(label) if label else None
    return item_for(
        resolve_reference(str(value), media_root),
        label=None if tag is None or str(tag) == "" else str(tag),
        fields=fields,
        metadata=metadata,
    )


def _csv_batches(path: Path) -> Iterator[list[dict[str, Any]]]:
    # Every column as text: a label column of digits stays "3", an id column keeps its leading zeros.
    with pacsv.open_csv(path) as reader:
        names = reader.schema.names
    options = pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=True)
    with pacsv.open_csv(path, convert_options=options) as stream:
        for batch in stream:
            yield batch.to_pylist()


def _jsonl_batches(path: Path) -> Iterator[list[dict[str, Any]]]:
    with path.open("rb") as fh:
        batch: list[dict[str, Any]] = []
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                row = exc
            if not isinstance(row, dict):
                # the header check reads line 1, so a broken first line fails the import; a later one is a drop
                if not batch and number == 1:
                    raise ImportSourceError(f"{path}: line {number} is not a JSON object: {row}")
                row = {_BAD_ROW: f"line {number}"}
            batch.append(row)
            if len(batch) >= 256:
                yield batch
                batch = []
        if batch:
            yield batch


def _parquet_batches(path: Path) -> Iterator[list[dict[str, Any]]]:
    for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
        yield batch.to_pylist()


def _manifest_header(path: Path, suffix: str) -> list[str]:
    """The manifest's column names, reading no more than its header (or first row)."""
    try:
        if suffix == ".csv":
            with pacsv.open_csv(path) as reader:
                return reader.schema.names
        if suffix == ".parquet":
            return read_parquet_schema(path).names
        first = next(_jsonl_batches(path), [])
        return list(first[0]) if first else []
    except ImportSourceError:
        raise
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise ImportSourceError(f"{path}: cannot read as a {suffix.lstrip('.')} manifest: {exc}") from exc


def open_manifest(path: Path, media_root: Path) -> Items:
    """A CSV, JSONL or Parquet manifest of paths or URLs, with an optional label column; other columns are
    metadata. The header is checked now; rows are read in batches as they are imported."""
    suffix = ".jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else path.suffix.lower()
    names = _manifest_header(path, suffix)
    ref, label = _manifest_columns(path, names)
    batches = {".csv": _csv_batches, ".jsonl": _jsonl_batches, ".parquet": _parquet_batches}[suffix]

    def items() -> Iterator[SourceItem]:
        for batch in batches(path):
            for row in batch:
                yield _row_item(row, ref, label, media_root)

    return items


def read_parquet_schema(path: Path) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except (OSError, pa.ArrowException) as exc:
        raise ImportSourceError(f"{path}: cannot read as Parquet: {exc}") from exc


def hf_features(folder: Path, schema: pa.Schema) -> dict[str, Any]:
    """The `datasets` features of a Parquet export: dataset_info.json beside it, else the schema's metadata."""
    for candidate in (folder / "dataset_info.json", folder.parent / "dataset_info.json"):
        if candidate.exists():
            return dict(json.loads(candidate.read_text()).get("features") or {})
    raw = (schema.metadata or {}).get(b"huggingface")
    return dict((json.loads(raw).get("info") or {}).get("features") or {}) if raw else {}


def find_image_column(schema: pa.Schema, features: dict[str, Any]) -> str | None:
    """The column `datasets` stores images in: an Image feature, else a struct with a binary `bytes` field."""
    for name, feature in features.items():
        if isinstance(feature, dict) and feature.get("_type") == "Image" and name in schema.names:
            return name
    for fld in schema:
        if pa.types.is_struct(fld.type) and fld.type.get_field_index("bytes") >= 0:
            return fld.name
    return None


def _hf_label(schema: pa.Schema, features: dict[str, Any]) -> tuple[str | None, list[str] | None]:
    for name, feature in features.items():
        if isinstance(feature, dict) and feature.get("_type") == "ClassLabel" and name in schema.names:
            return name, [str(n) for n in feature.get("names") or []] or None
    return _pick(schema.names, LABEL_COLUMNS), None


def _hf_rows(file: Path, image: str, label: str | None, names: list[str] | None) -> Iterator[SourceItem]:
    mtime = file.stat().st_mtime
    row = 0
    for batch in pq.ParquetFile(file).iter_batches(batch_size=64):
        for record in batch.to_pylist():
            cell = record.pop(image) or {}
            data, tag = cell.get("bytes"), record.pop(label, None) if label else None
            if isinstance(tag, int) and names and 0 <= tag < len(names):
                tag = names[tag]
            meta = {k: v for k, v in record.items() if isinstance(v, str | int | float | bool)}
            meta["hf_path"] = cell.get("path")
            locator = f"{file}#{row}"
            row += 1
            if data is None:
                yield SourceItem(locator, refused="no_image_bytes", metadata=meta)
                continue
            tag = None if tag is None or (isinstance(tag, int) and tag < 0) else str(tag)  # -1: no label
            yield SourceItem(locator, size=len(data), mtime=mtime, label=tag, metadata=meta, data=data)


def open_hf_parquet(path: Path, media_root: Path) -> Items:
    """A Hugging Face `datasets` Parquet folder (or one file): an Image struct column {bytes, path} and a
    ClassLabel int label named by the features in dataset_info.json or the Parquet metadata."""
    files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
    if not files:
        raise ImportSourceError(f"{path}: no Parquet files in this Hugging Face dataset folder")
    schema = read_parquet_schema(files[0])
    features = hf_features(path if path.is_dir() else path.parent, schema)
    image = find_image_column(schema, features)
    if image is None:
        raise ImportSourceError(f"{files[0]}: no image column (an Image feature or a struct with bytes)")
    label, names = _hf_label(schema, features)

    def items() -> Iterator[SourceItem]:
        for file in files:
            yield from _hf_rows(file, image, label, names)

    return items

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
from crawlers.importers.label_sets import (
    LABEL_SET_COLUMNS,
    LabelSetError,
    check_label_sets,
    parse_label_set,
    refuse_mixed,
)

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


def _row_item(row: dict[str, Any], ref: str, label: str | None, sets: str | None, media_root: Path) -> SourceItem:
    if _BAD_ROW in row:
        return SourceItem(f"(manifest {row[_BAD_ROW]})", refused="bad_manifest_row")
    value = row.get(ref)
    if value is None or not str(value).strip():
        return SourceItem(f"(row without {ref})", refused=f"empty_{ref}")
    fields = {k: str(row[k]) for k in RECORD_COLUMNS if row.get(k) is not None}
    taken = (ref, label, sets, *RECORD_COLUMNS)
    metadata = {k: v for k, v in row.items() if k not in taken and v is not None}
    tag = row.get(label) if label else None
    return item_for(
        resolve_reference(str(value), media_root),
        label=None if tag is None or str(tag) == "" else str(tag),
        label_set=parse_label_set(row.get(sets)) if sets else None,  # checked by _check_manifest_sets
        fields=fields,
        metadata=metadata,
    )


def _csv_batches(path: Path) -> Iterator[list[dict[str, Any]]]:
    # Every column as text: a label column of digits stays "3", an id column keeps its leading zeros.
    with pacsv.open_csv(path) as reader:
        names = reader.schema.names
    # A quoted "" stays "" (in the label-set column: the empty set); every other column reads it as null.
    options = pacsv.ConvertOptions(
        column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=True, quoted_strings_can_be_null=False
    )
    sets = _pick(names, LABEL_SET_COLUMNS)
    with pacsv.open_csv(path, convert_options=options) as stream:
        for batch in stream:
            yield [{k: None if v == "" and k != sets else v for k, v in row.items()} for row in batch.to_pylist()]


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
    """A CSV, JSONL or Parquet manifest of paths or URLs, with an optional label column or a `labels` column of
    label sets (crawlers.importers.label_sets); other columns are metadata. The header, and every label set
    (one pass over the rows, _check_manifest_sets), are checked now; rows are read in batches as imported."""
    suffix = ".jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else path.suffix.lower()
    names = _manifest_header(path, suffix)
    ref, label = _manifest_columns(path, names)
    batches = {".csv": _csv_batches, ".jsonl": _jsonl_batches, ".parquet": _parquet_batches}[suffix]
    sets = _pick(names, LABEL_SET_COLUMNS)
    if sets is not None or suffix == ".jsonl":  # a JSONL row's keys are its own: any row may bring a set
        sets = _check_manifest_sets(path, batches(path), label, sets or LABEL_SET_COLUMNS[0])

    def items() -> Iterator[SourceItem]:
        for batch in batches(path):
            for row in batch:
                yield _row_item(row, ref, label, sets, media_root)

    return items


def _check_manifest_sets(
    path: Path, batches: Iterator[list[dict[str, Any]]], label: str | None, sets: str
) -> str | None:
    """`sets` when the manifest gives label sets in that column (None when no row does), after reading every
    row once: ImportSourceError names the file and the row of the first cell that is not a set, or of a row
    giving a single label in a file of sets. Nothing is written before this pass, so a bad row loses nothing."""
    first_single, any_set = None, False
    for rows, row in enumerate((row for batch in batches for row in batch), 1):
        any_set = any_set or sets in row
        check_label_sets(path, [(f"row {rows}, column {sets}", row.get(sets))])
        tag = row.get(label) if label else None
        if first_single is None and tag is not None and str(tag) != "":
            first_single = rows
    if not any_set:
        return None
    if first_single is not None:
        raise refuse_mixed(path, f"row {first_single}", str(label), sets)
    return sets


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


_HF_LISTS = ("Sequence", "List", "LargeList")  # how `datasets` versions name a Sequence feature in to_dict()


def _hf_label_set(schema: pa.Schema, features: dict[str, Any]) -> tuple[str | None, list[str] | None]:
    """(column, class names) of a multi-label HF dataset: a Sequence(ClassLabel) feature, else a list column
    named `labels`; (None, None) when it has neither."""
    for name, feature in features.items():
        inner = feature.get("feature") if isinstance(feature, dict) and feature.get("_type") in _HF_LISTS else None
        if isinstance(inner, dict) and inner.get("_type") == "ClassLabel" and name in schema.names:
            return name, [str(n) for n in inner.get("names") or []]
    column = _pick(schema.names, LABEL_SET_COLUMNS)
    kind = schema.field(column).type if column else None
    listed = kind is not None and (pa.types.is_list(kind) or pa.types.is_large_list(kind))
    return (column, None) if listed else (None, None)


def hf_label_set(cell: Any, names: list[str] | None) -> list[str] | None:
    """A Sequence(ClassLabel) cell (indices into `names`) or a list of strings as a label set; LabelSetError
    for an index out of the class list."""
    if cell is None or names is None:
        return parse_label_set(cell)
    members = []
    for member in cell:
        if isinstance(member, int) and not 0 <= member < len(names):
            raise LabelSetError(f"class index {member} is not in the {len(names)} class names")
        members.append(names[member] if isinstance(member, int) else member)
    return parse_label_set(members)


def _check_hf_sets(files: list[Path], column: str, names: list[str] | None) -> None:
    """Every row's set parses (reading that one column), else ImportSourceError naming the file and the row."""
    for file in files:
        cells = pq.read_table(file, columns=[column]).column(column).to_pylist()
        for row, cell in enumerate(cells):
            try:
                hf_label_set(cell, names)
            except LabelSetError as exc:
                raise ImportSourceError(f"{file}: row {row}, column {column}: {exc}") from None


def _hf_rows(file: Path, image: str, label: str | None, names: list[str] | None, sets: bool) -> Iterator[SourceItem]:
    mtime = file.stat().st_mtime
    row = 0
    for batch in pq.ParquetFile(file).iter_batches(batch_size=64):
        for record in batch.to_pylist():
            cell = record.pop(image) or {}
            data, tag = cell.get("bytes"), record.pop(label, None) if label else None
            chosen = hf_label_set(tag, names) if sets else None  # checked by _check_hf_sets
            if isinstance(tag, int) and names and 0 <= tag < len(names):
                tag = names[tag]
            meta = {k: v for k, v in record.items() if isinstance(v, str | int | float | bool)}
            meta["hf_path"] = cell.get("path")
            locator = f"{file}#{row}"
            row += 1
            if data is None:
                yield SourceItem(locator, refused="no_image_bytes", metadata=meta)
                continue
            tag = None if sets or tag is None or (isinstance(tag, int) and tag < 0) else str(tag)  # -1: no label
            answer = {"label": tag, "label_set": chosen}
            yield SourceItem(locator, size=len(data), mtime=mtime, metadata=meta, data=data, **answer)


def open_hf_parquet(path: Path, media_root: Path) -> Items:
    """A Hugging Face `datasets` Parquet folder (or one file): an Image struct column {bytes, path} and a
    ClassLabel int label, or a Sequence(ClassLabel) (or list of strings) label set, named by the features in
    dataset_info.json or the Parquet metadata. A dataset with both is refused: one kind of answer a file."""
    files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
    if not files:
        raise ImportSourceError(f"{path}: no Parquet files in this Hugging Face dataset folder")
    schema = read_parquet_schema(files[0])
    features = hf_features(path if path.is_dir() else path.parent, schema)
    image = find_image_column(schema, features)
    if image is None:
        raise ImportSourceError(f"{files[0]}: no image column (an Image feature or a struct with bytes)")
    label, names = _hf_label(schema, features)
    set_column, set_names = _hf_label_set(schema, features)
    if set_column is not None:
        if label is not None:
            raise refuse_mixed(files[0], "its features", label, set_column)
        _check_hf_sets(files, set_column, set_names)
        label, names = set_column, set_names

    def items() -> Iterator[SourceItem]:
        for file in files:
            yield from _hf_rows(file, image, label, names, set_column is not None)

    return items

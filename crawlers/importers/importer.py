"""The import run: a source's items read, deduplicated against the import state and written as raw shards,
`raw/<import run>/part-*.parquet` + `_report.json`, exactly as a crawl writes them; labels and side data beside."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
from PIL import Image, UnidentifiedImageError

from corpus.releases.multilabel import join_label_set
from corpus.schema import RECORD_SCHEMA, make_record_id
from corpus.store import DataRoot
from crawlers.content import sniff_mime
from crawlers.importers.config import ImportConfig, ImportLabelPolicy
from crawlers.importers.fetch import GuardedFetcher
from crawlers.importers.labels import BOX_UPDATE_SCHEMA, BOX_UPDATES, annotation_rows, prediction_rows
from crawlers.importers.sources import ImportSourceError, SourceItem, check_source
from crawlers.importers.state import ImportState

REPORT_NAME = "_report.json"
_EXAMPLES = 50  # refusals listed by URL in the report; the rest are counted


@dataclass
class ImportProgress:
    """Running totals, handed to the progress callback after every file."""

    files: int = 0
    bytes: int = 0
    drops: int = 0
    new: int = 0
    unchanged: int = 0
    labels_changed: int = 0


ProgressFn = Callable[[ImportProgress], None]


def locator_url(locator: str) -> str:
    """The record's `url` for a locator: URLs as they are, local paths as file:// URLs (with #row kept)."""
    if "://" in locator:
        return locator
    path, _, row = locator.partition("#")
    return Path(path).absolute().as_uri() + (f"#{row}" if row else "")


@dataclass
class ShardWriter:
    """Buffers records up to `cfg.shard_rows` rows or `cfg.shard_bytes` bytes, then writes one raw shard and its
    labels and metadata beside it (boxes are a column of the records); memory holds one shard at most. Label
    updates of records imported before (no new row) are buffered and written the same way, boxes beside."""

    root: DataRoot
    cfg: ImportConfig
    import_run: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    labels: list[tuple[str, str | None]] = field(default_factory=list)
    label_sets: list[list[str] | None] = field(default_factory=list)  # one per labels row; None: a single label
    extras: list[dict[str, Any]] = field(default_factory=list)
    box_updates: list[dict[str, Any]] = field(default_factory=list)
    buffered_bytes: int = 0
    shards: list[str] = field(default_factory=list)
    label_count: int = 0
    label_set_count: int = 0
    flushes: int = 0
    updates: int = 0  # records buffered for their labels only

    def add(self, record: dict[str, Any], item: SourceItem) -> None:
        rid = record["record_id"]
        self.rows.append(record)
        self.buffered_bytes += len(record["image"])
        self._add_label(rid, item)
        if item.metadata:
            meta = json.dumps(item.metadata, default=str)
            self.extras.append({"record_id": rid, "locator": item.locator, "metadata": meta})
        self._flush_when_full()

    def update_labels(self, record_id: str, item: SourceItem) -> None:
        """The source's new label and boxes for a record imported before: a newer version of its imported
        annotation (same id, later time) and a box update (crawlers.importers.labels.BOX_UPDATE_SCHEMA)."""
        self._add_label(record_id, item)
        if item.boxes is not None:
            width, height = item.image_size or (None, None)
            row = {"record_id": record_id, "width": width, "height": height, "boxes": item.boxes}
            self.box_updates.append({**row, "label_source": self.cfg.label_origin, "updated_at": datetime.now(UTC)})
        self.updates += 1
        self._flush_when_full()

    def _add_label(self, record_id: str, item: SourceItem) -> None:
        if item.label_set is not None:  # a label set, [] included ("none of these"): an answer
            self.labels.append((record_id, None))
            self.label_sets.append(item.label_set)
        elif item.label is not None:
            self.labels.append((record_id, item.label))
            self.label_sets.append(None)

    def _flush_when_full(self) -> None:
        if len(self.rows) + self.updates >= self.cfg.shard_rows or self.buffered_bytes >= self.cfg.shard_bytes:
            self.flush()

    def flush(self) -> None:
        if not (self.rows or self.labels or self.box_updates):
            return
        side, part = f"imports/{self.cfg.source_name}", f"part-{self.flushes:05d}.parquet"
        if self.labels:
            pairs = zip(self.labels, self.label_sets, strict=True)
            shown = [(rid, label if s is None else join_label_set(s)) for (rid, label), s in pairs]
            self.root.write_table(f"{side}/labels/{self.import_run}-{part}", prediction_rows(shown))
            if self.cfg.label_policy != ImportLabelPolicy.preannotate:
                at = datetime.now(UTC)
                sets = self.label_sets if any(s is not None for s in self.label_sets) else None
                table = annotation_rows(self.labels, self.cfg.label_origin, at, sets)
                self.root.write_table(f"annotations/part-{self.import_run}-{self.flushes:05d}.parquet", table)
            self.label_count += len(self.labels)
            self.label_set_count += sum(s is not None for s in self.label_sets)
        if self.extras:
            self.root.write_table(f"{side}/metadata/{self.import_run}-{part}", pa.Table.from_pylist(self.extras))
        if self.box_updates:
            table = pa.Table.from_pylist(self.box_updates, schema=BOX_UPDATE_SCHEMA)
            self.root.write_table(f"{side}/{BOX_UPDATES}/{self.import_run}-{part}", table)
        if self.rows:  # the shard last: a record in a shard always has its labels written
            shard = f"part-{len(self.shards):05d}.parquet"
            table = pa.Table.from_pylist(self.rows, schema=RECORD_SCHEMA)
            self.root.write_table(f"raw/{self.import_run}/{shard}", table)
            self.shards.append(shard)
        self.flushes += 1
        self.rows, self.labels, self.label_sets, self.extras, self.box_updates = [], [], [], [], []
        self.buffered_bytes, self.updates = 0, 0


class ContentReader:
    """Reads an item's bytes: inline data, a local file, an object on an fsspec store, or a URL through the
    guarded fetcher. Returns (bytes, None) or (None, reason)."""

    def __init__(self, cfg: ImportConfig, storage_options: dict[str, Any] | None) -> None:
        self.cfg, self.storage_options = cfg, storage_options or {}
        self._fetcher: GuardedFetcher | None = None
        self._fs: dict[str, fsspec.AbstractFileSystem] = {}

    def read(self, item: SourceItem) -> tuple[bytes | None, str | None]:
        if item.data is not None:
            return item.data, None
        locator = item.locator
        if locator.startswith(("http://", "https://")):
            if self._fetcher is None:
                self._fetcher = GuardedFetcher(self.cfg.allowed_private_hosts, self.cfg.fetch_delay_s)
            fetched = self._fetcher.fetch(locator)
            return fetched.data, fetched.reason
        try:
            if "://" in locator:
                protocol = locator.split("://", 1)[0]
                if protocol not in self._fs:
                    self._fs[protocol] = fsspec.filesystem(protocol, **self.storage_options)
                return self._fs[protocol].cat_file(locator), None
            with open(locator, "rb") as fh:
                return fh.read(), None
        except FileNotFoundError:
            return None, "missing_file"
        except OSError as exc:
            return None, f"unreadable/{type(exc).__name__}"

    def close(self) -> None:
        if self._fetcher is not None:
            self._fetcher.close()


def _record(cfg: ImportConfig, import_run: str, item: SourceItem, data: bytes, rid: str) -> dict[str, Any]:
    boxes = {}
    if item.boxes is not None:
        # the boxes are in pixels of image_size: the record says which size, and where they came from
        width, height = item.image_size or (None, None)
        boxes = {"boxes": item.boxes, "label_source": cfg.label_origin, "width": width, "height": height}
    return {
        "record_id": rid,
        "kind": "image",
        "url": locator_url(item.locator),
        "source": cfg.source_name,
        "crawl_run": import_run,
        "fetched_at": datetime.now(UTC),
        "image": data,
        "mime": sniff_mime(data),
        **item.fields,
        **boxes,
    }


def find_box_size_mismatch(item: SourceItem, data: bytes) -> str | None:
    """One line naming the file when the boxes of `item` were given for another size than its image has
    (a COCO file whose width/height disagree with the file); None when they agree or it has no boxes."""
    if item.boxes is None or item.image_size is None:
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:
            actual = image.size
    except (OSError, UnidentifiedImageError, ValueError):
        return None  # curation drops what cannot be decoded, with its reason
    if tuple(actual) == tuple(item.image_size):
        return None
    w, h = item.image_size
    return f"{item.locator}: its boxes are for a {w}x{h} image, the file is {actual[0]}x{actual[1]}"


def run_import(
    root: DataRoot,
    cfg: ImportConfig,
    *,
    import_run: str,
    state_path: Path,
    storage_options: dict[str, Any] | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Import `cfg.source` into `raw/<import_run>/` of `root`; return the report (also `_report.json`).

    Files the import state has with the same size and mtime (a URL: at all) are not read; a file whose bytes
    are unchanged is not written again; a changed file becomes a new record (its new content's record_id).
    When nothing is new, nothing is written: `output` is None. Raises ImportSourceError (nothing written, the
    state untouched) for a source that cannot be read or holds no images.
    `storage_options`: fsspec options for an s3:// source (the data root's: corpus.store.s3_storage_options).
    """
    source = check_source(cfg, storage_options)
    started = datetime.now(UTC)
    state, reader = ImportState(state_path), ContentReader(cfg, storage_options)
    writer = ShardWriter(root, cfg, import_run)
    totals, skipped, dropped = ImportProgress(), Counter[str](), Counter[str]()
    refused: list[dict[str, str]] = []
    try:
        for item in source.items():
            reason = _import_item(cfg, import_run, item, state, reader, writer, totals, skipped)
            if reason is not None:
                totals.drops += 1
                dropped[reason] += 1
                if len(refused) < _EXAMPLES:
                    detail = {"detail": item.refused_detail} if item.refused_detail else {}
                    refused.append({"locator": item.locator, "reason": reason, **detail})
            if progress is not None:
                progress(totals)
        if totals.files == 0:
            others = sum(skipped.values())
            raise ImportSourceError(f"{cfg.source}: no images found ({source.kind}; {others} other files)")
        writer.flush()
    finally:
        reader.close()
    report = {
        "crawl_run": import_run,
        "import_run": import_run,
        "source": cfg.source_name,
        "location": cfg.source,
        "kind": source.kind,
        "label_policy": cfg.label_policy.value,
        "label_origin": cfg.label_origin,
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "files": totals.files,
        "bytes": totals.bytes,
        "records": totals.new,
        "images": totals.new,
        "pages": 0,
        "unchanged": totals.unchanged,
        "labels": writer.label_count,
        "label_sets": writer.label_set_count,  # of `labels`, the multi-label answers
        "labels_changed": totals.labels_changed,
        "dropped": totals.drops,
        "dropped_by_reason": dict(sorted(dropped.items())),
        "refused": refused,
        "skipped": dict(sorted(skipped.items())),
        "shards_written": writer.shards,
        "output": f"raw/{import_run}" if writer.shards else None,
    }
    if writer.shards:
        root.write_json(f"raw/{import_run}/{REPORT_NAME}", report)
    report["files_learnt"] = state.commit()
    state.close()
    return report


def compute_label_key(item: SourceItem) -> str:
    """A digest of what the source says about the file's labels: its class label, its boxes and their size."""
    said = {"label": item.label, "boxes": item.boxes, "size": item.image_size}
    if item.label_set is not None:  # only then: a single-label source keeps the keys it was learnt with
        said["label_set"] = item.label_set
    return hashlib.sha256(json.dumps(said, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _labels_changed(known_key: str | None, label_key: str, item: SourceItem) -> bool:
    """True when the source now gives a known file other labels than last time (a state from before label keys
    were kept cannot tell: False, and the key is learnt). Labels the source no longer gives are not undone."""
    said = item.label is not None or item.label_set is not None or item.boxes is not None
    return known_key is not None and known_key != label_key and said


def _import_item(
    cfg: ImportConfig,
    import_run: str,
    item: SourceItem,
    state: ImportState,
    reader: ContentReader,
    writer: ShardWriter,
    totals: ImportProgress,
    skipped: Counter[str],
) -> str | None:
    """Import one item; the reason it was dropped, or None. A file whose content this source imported before (at
    this locator or another: moved to another class folder) adds no row; if its labels or boxes changed in the
    source, they are written as a new version of its imported labels."""
    if item.skip:
        skipped[item.skip] += 1
        return None
    totals.files += 1
    if item.refused:
        return item.refused
    label_key = compute_label_key(item)
    stored = state.stored(item.locator)
    as_before = stored is not None and stored.same_stat(item.size, item.mtime)
    rid, known_key = (stored.record_id, stored.label_key) if as_before else (None, None)
    changed = rid is not None and _labels_changed(known_key, label_key, item)
    data = None
    if rid is None or (changed and item.boxes is not None):  # new boxes are checked against the file's size
        data, reason = reader.read(item)
        if data is None:
            return reason or "unreadable"
        mismatch = find_box_size_mismatch(item, data)
        if mismatch is not None:
            item.refused_detail = mismatch
            return "bad_box"
        totals.bytes += len(data)
        rid = make_record_id(data)
        known, known_key = state.labels_of(rid, stored)
        if not known:
            writer.add(_record(cfg, import_run, item, data, rid), item)
            totals.new += 1
        changed = known and _labels_changed(known_key, label_key, item)
        totals.unchanged += int(known)
    else:
        totals.unchanged += 1
    if changed:
        writer.update_labels(rid, item)
        totals.labels_changed += 1
    if not as_before or known_key != label_key:
        size = item.size if item.size is not None else (len(data) if data is not None else None)
        state.learn(item.locator, size, item.mtime, rid, label_key)
    return None


def import_to_root(
    root: DataRoot,
    cfg: ImportConfig,
    *,
    import_run: str,
    work_dir: Path,
    storage_options: dict[str, Any] | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """run_import with the source's import state at `state/import/<source>.sqlite` of `root`: in place on a
    local root; on object storage downloaded to `work_dir` first and uploaded after (once the raw folder is
    complete), as crawlers.run.crawl_to_root carries a crawl's incremental state."""
    state_rel = f"state/import/{cfg.source_name}.sqlite"
    if root.is_local:
        return run_import(
            root, cfg, import_run=import_run, state_path=Path(root.local_path(state_rel)),
            storage_options=storage_options, progress=progress,
        )  # fmt: skip
    staging = Path(work_dir).absolute() / "import" / import_run
    staging.mkdir(parents=True, exist_ok=True)
    local_state = staging / "state.sqlite"
    try:
        if root.exists(state_rel):
            root.get_file(state_rel, str(local_state))
        report = run_import(
            root, cfg, import_run=import_run, state_path=local_state,
            storage_options=storage_options, progress=progress,
        )  # fmt: skip
        root.put_file(str(local_state), state_rel)
        return report
    finally:
        shutil.rmtree(staging, ignore_errors=True)

"""Dataset releases: stable group-aware splits, immutable versioned folders, manifests and data cards."""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import os
import posixpath
import re
import subprocess
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, Field, model_validator

from corpus.schema import SCHEMA_VERSION, SPLITS, conform
from corpus.store import DataRoot

_VERSION_RE = re.compile(r"^v(\d{4,})$")
SPLIT_FILES = {split: f"{split}.parquet" for split in SPLITS}


class ReleaseIntegrityError(Exception):
    """A release file is missing or its bytes no longer match the SHA-256 in the manifest."""


class ReleaseConfig(BaseModel):
    """How a release is split and described."""

    # 70/15/15 is the common default of dataset tooling (e.g. scikit-learn examples, HF split recipes).
    train: float = Field(0.7, ge=0.0, le=1.0, description="Target fraction of each label in train.")
    val: float = Field(0.15, ge=0.0, le=1.0, description="Target fraction of each label in val.")
    test: float = Field(0.15, ge=0.0, le=1.0, description="Target fraction of each label in test.")
    split_key: str = Field(
        "flywheel-split-v1", description="Salt of the keyed hash ordering new groups; change it to reshuffle."
    )
    card_thumbs_per_class: int = Field(4, ge=0, description="Thumbnails per class on card.html.")
    card_thumb_px: int = Field(96, ge=16, description="Longest side of a card thumbnail, in pixels.")

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> ReleaseConfig:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1, got {total:.4f}")
        return self

    def fractions(self) -> dict[str, float]:
        return {"train": self.train, "val": self.val, "test": self.test}


@dataclass
class Release:
    """A loaded, verified release."""

    manifest: dict
    version: str
    train: pa.Table
    val: pa.Table
    test: pa.Table
    path: str

    def split(self, name: str) -> pa.Table:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; splits are {list(SPLITS)}")
        return getattr(self, name)


# ---------------------------------------------------------------- splits


def _group_keys(records: pa.Table) -> list[str]:
    ids = records.column("record_id").to_pylist()
    if "near_dup_cluster" in records.column_names:
        clusters = records.column("near_dup_cluster").to_pylist()
    else:
        clusters = [None] * len(ids)
    # Prefixes keep a cluster id from ever colliding with a record id.
    return [f"c:{c}" if c is not None else f"r:{r}" for c, r in zip(clusters, ids, strict=True)]


def _majority(values: list[str]) -> str:
    """Most common value; ties go to the smallest, so the result never depends on row order."""
    counts = Counter(values)
    best = max(counts.values())
    return min(v for v, n in counts.items() if n == best)


def assign_splits(records: pa.Table, cfg: ReleaseConfig, previous: dict[str, str] | None = None) -> pa.Array:
    """The split of each row of `records` (a string array aligned with the rows).

    Groups are `near_dup_cluster` (or the record itself when null); a group always lands in one split.
    A group with a record that had a split in `previous` (record_id -> split, from the parent release)
    keeps it (the majority one if a merged cluster had several). New groups, taken in the order of
    sha256(split_key + group), each go to the split furthest below its target share of the group's
    majority label, counting the rows of that label already assigned; so splits are stratified,
    deterministic, and adding data never moves an existing item.
    """
    for name in ("record_id", "label"):
        if name not in records.column_names:
            raise ValueError(f"assign_splits needs a {name!r} column")
    previous = previous or {}
    bad = sorted({s for s in previous.values() if s not in SPLITS})
    if bad:
        raise ValueError(f"previous splits must be one of {list(SPLITS)}, got {bad}")
    ids = records.column("record_id").to_pylist()
    labels = ["" if x is None else x for x in records.column("label").to_pylist()]
    groups = _group_keys(records)

    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)

    fractions = cfg.fractions()
    counts: dict[str, Counter] = defaultdict(Counter)  # label -> split -> rows
    group_split: dict[str, str] = {}
    fresh: list[str] = []
    for g, rows in members.items():
        kept = [previous[ids[i]] for i in rows if ids[i] in previous]
        if kept:
            group_split[g] = _majority(kept)
            for i in rows:
                counts[labels[i]][group_split[g]] += 1
        else:
            fresh.append(g)

    def order(g: str) -> str:
        return hashlib.sha256((cfg.split_key + g).encode()).hexdigest()

    for g in sorted(fresh, key=order):
        rows = members[g]
        label = _majority([labels[i] for i in rows])
        seen = counts[label]
        total = sum(seen.values()) + len(rows)
        # Deficit against the target after this group lands; ties go to SPLITS order (train first).
        deficits = {s: fractions[s] * total - seen[s] for s in SPLITS if fractions[s] > 0}
        best = max(deficits.values())
        split = next(s for s in SPLITS if s in deficits and deficits[s] == best)
        group_split[g] = split
        for i in rows:
            counts[labels[i]][split] += 1

    return pa.array([group_split[g] for g in groups], type=pa.string())


# ---------------------------------------------------------------- layout helpers


def _dataset_dir(dataset: str) -> str:
    if not dataset or "/" in dataset or dataset.startswith("."):
        raise ValueError(f"bad dataset name {dataset!r}: use a plain folder name")
    return posixpath.join("releases", dataset)


def list_releases(root: DataRoot, dataset: str) -> list[str]:
    """The versions of `dataset` that exist, sorted ("v0001", "v0002", ...)."""
    names = [n for n in root.list_dirs(_dataset_dir(dataset)) if _VERSION_RE.match(n)]
    return sorted(names, key=lambda n: int(_VERSION_RE.match(n).group(1)))


def _normalise_version(version: str | int) -> str:
    text = str(version)
    if text.isdigit():
        return f"v{int(text):04d}"
    return text


def _resolve(root: DataRoot, dataset: str, version: str | int) -> str:
    versions = list_releases(root, dataset)
    if not versions:
        raise FileNotFoundError(f"dataset {dataset!r} has no releases under {root.path(_dataset_dir(dataset))}")
    if str(version) == "latest":
        return versions[-1]
    name = _normalise_version(version)
    if name not in versions:
        raise FileNotFoundError(f"release {dataset}/{name} does not exist; versions: {', '.join(versions)}")
    return name


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_release(root: DataRoot, dataset: str, version: str | int = "latest") -> Release:
    """Load one release, verifying every file's SHA-256 against its manifest.

    Raises FileNotFoundError (listing the versions that exist) for an unknown version and
    ReleaseIntegrityError naming the file when a file is missing or its bytes changed.
    """
    name = _resolve(root, dataset, version)
    rel = posixpath.join(_dataset_dir(dataset), name)
    try:
        manifest = root.read_json(posixpath.join(rel, "manifest.json"))
    except FileNotFoundError as exc:
        raise ReleaseIntegrityError(f"{rel}/manifest.json is missing") from exc
    tables: dict[str, pa.Table] = {}
    for fname, entry in sorted(manifest.get("files", {}).items()):
        fpath = posixpath.join(rel, fname)
        try:
            data = root.read_bytes(fpath)
        except FileNotFoundError as exc:
            raise ReleaseIntegrityError(f"{fpath} is listed in the manifest but missing") from exc
        digest = _sha256(data)
        if digest != entry["sha256"]:
            raise ReleaseIntegrityError(
                f"{fpath} was modified: sha256 {digest[:16]}… does not match the manifest's {entry['sha256'][:16]}…"
            )
        if fname.endswith(".parquet"):
            tables[fname] = conform(pq.read_table(pa.BufferReader(data)))
    for fname in SPLIT_FILES.values():
        if fname not in tables:
            raise ReleaseIntegrityError(f"{rel}/{fname} is not in the manifest")
    return Release(
        manifest=manifest,
        version=name,
        train=tables[SPLIT_FILES["train"]],
        val=tables[SPLIT_FILES["val"]],
        test=tables[SPLIT_FILES["test"]],
        path=root.path(rel),
    )


# ---------------------------------------------------------------- building


def _code_version() -> str:
    project_dir = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project_dir, capture_output=True, text=True, timeout=10, check=False
        )
        if out.returncode == 0 and out.stdout.strip():
            return f"git:{out.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return f"flywheel=={importlib_metadata.version('flywheel')}"
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def _validate_records(records: pa.Table) -> pa.Table:
    table = conform(records)
    if table.num_rows == 0:
        raise ValueError("cannot release an empty table")
    ids = table.column("record_id")
    if pc.count_distinct(ids).as_py() != table.num_rows:
        dupes = [k for k, n in Counter(ids.to_pylist()).items() if n > 1]
        raise ValueError(f"{len(dupes)} record_ids appear more than once, e.g. {dupes[:3]}")
    unlabeled = pc.is_null(table.column("label"))
    if pc.any(unlabeled).as_py():
        missing = table.filter(unlabeled).column("record_id").to_pylist()
        raise ValueError(f"{len(missing)} records have no label, e.g. {missing[:3]}; release only labeled records")
    return table


def _content_key(table: pa.Table) -> list[tuple[str, str, str]]:
    cols = [table.column(c).to_pylist() for c in ("record_id", "label", "split")]
    return sorted(zip(*cols, strict=True))


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", row_group_size=1024)
    return sink.getvalue().to_pybytes()


def _diff(new: pa.Table, parent: pa.Table | None) -> dict[str, int]:
    if parent is None:
        return {"added": new.num_rows, "removed": 0, "relabelled": 0, "moved": 0}
    old = dict(zip(parent.column("record_id").to_pylist(), parent.column("label").to_pylist(), strict=True))
    old_split = dict(zip(parent.column("record_id").to_pylist(), parent.column("split").to_pylist(), strict=True))
    ids = new.column("record_id").to_pylist()
    labels = new.column("label").to_pylist()
    splits = new.column("split").to_pylist()
    added = sum(1 for r in ids if r not in old)
    relabelled = sum(1 for r, lab in zip(ids, labels, strict=True) if r in old and old[r] != lab)
    moved = sum(1 for r, s in zip(ids, splits, strict=True) if r in old_split and old_split[r] != s)
    removed = len(set(old) - set(ids))
    return {"added": added, "removed": removed, "relabelled": relabelled, "moved": moved}


def _thumbnail(data: bytes | None, px: int) -> str | None:
    """A base64 JPEG data URI of an image, or None when it cannot be decoded."""
    if not data:
        return None
    from PIL import Image  # Pillow only for the card; imported here so the split logic never needs it

    try:
        with Image.open(io.BytesIO(data)) as img:
            img = img.convert("RGB")
            img.thumbnail((px, px))
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=80)
    except Exception:  # any undecodable image is simply left off the card
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _render_card(manifest: dict, splits: dict[str, pa.Table], cfg: ReleaseConfig) -> str:
    esc = html.escape
    labels = sorted({lab for counts in manifest["class_counts"].values() for lab in counts})
    head = "".join(f"<th>{esc(s)}</th>" for s in SPLITS)
    rows = []
    for lab in labels:
        cells = "".join(f"<td>{manifest['class_counts'][s].get(lab, 0)}</td>" for s in SPLITS)
        rows.append(f"<tr><th>{esc(lab)}</th>{cells}</tr>")
    totals = "".join(f"<td><b>{manifest['rows'][s]}</b></td>" for s in SPLITS)
    rows.append(f"<tr><th>total</th>{totals}</tr>")

    thumbs = []
    for lab in labels:
        imgs = []
        for s in SPLITS:
            t = splits[s]
            if len(imgs) >= cfg.card_thumbs_per_class or t.num_rows == 0:
                continue
            sub = t.filter(pc.equal(t.column("label"), lab))
            for data in sub.column("image").to_pylist():
                if len(imgs) >= cfg.card_thumbs_per_class:
                    break
                uri = _thumbnail(data, cfg.card_thumb_px)
                if uri:
                    imgs.append(f'<img src="{uri}" alt="{esc(lab)}">')
        thumbs.append(f"<div class='cls'><h3>{esc(lab)}</h3>{''.join(imgs) or '<i>no images</i>'}</div>")

    diff = manifest["diff"]
    diff_items = "".join(f"<li>{esc(k)}: {v}</li>" for k, v in diff.items())
    mix = "".join(f"<li>{esc(k)}: {v}</li>" for k, v in manifest["label_sources"].items())
    extra = esc(json.dumps(manifest.get("extra", {}), indent=2, sort_keys=True, default=str))
    title = f"{esc(manifest['dataset'])} {esc(manifest['version'])}"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}
th{{background:#f4f4f4}}.cls{{margin:1em 0}}.cls img{{margin:2px;border:1px solid #ddd}}
pre{{background:#f8f8f8;padding:8px}}
</style></head><body>
<h1>{title}</h1>
<p>parent: {esc(str(manifest["parent"]))} &middot; created {esc(manifest["created_at"])} &middot;
code {esc(manifest["code_version"])} &middot; schema v{esc(manifest["schema_version"])}</p>
<h2>Class balance</h2><table><tr><th>label</th>{head}</tr>{"".join(rows)}</table>
<h2>Changes since parent</h2><ul>{diff_items}</ul>
<h2>Label sources</h2><ul>{mix}</ul>
<h2>Examples</h2>{"".join(thumbs)}
<h2>Extra</h2><pre>{extra}</pre>
</body></html>
"""


def _class_counts(table: pa.Table) -> dict[str, int]:
    return dict(sorted(Counter(table.column("label").to_pylist()).items()))


def build_release(
    root: DataRoot, dataset: str, records: pa.Table, cfg: ReleaseConfig, *, extra: dict | None = None
) -> dict:
    """Write the next release of `dataset` from labeled kept records and return its manifest.

    The parent is the latest existing release; records it held keep their split. When the content
    (record_ids, labels, splits) equals the parent's, nothing is written and the parent's manifest
    is returned with "unchanged": True. The folder is written under a temporary name and moved into
    place; an existing version is never overwritten; files are made read-only on local roots.
    """
    table = _validate_records(records)
    base = _dataset_dir(dataset)
    versions = list_releases(root, dataset)
    parent = load_release(root, dataset, versions[-1]) if versions else None
    parent_all = pa.concat_tables([parent.train, parent.val, parent.test]) if parent else None
    previous = (
        dict(zip(parent_all.column("record_id").to_pylist(), parent_all.column("split").to_pylist(), strict=True))
        if parent_all is not None
        else None
    )
    splits_col = assign_splits(table, cfg, previous)
    table = table.set_column(table.schema.get_field_index("split"), "split", splits_col)
    table = table.sort_by("record_id")

    if parent_all is not None and _content_key(table) == _content_key(parent_all):
        return {**parent.manifest, "unchanged": True}

    version = f"v{(int(_VERSION_RE.match(versions[-1]).group(1)) + 1) if versions else 1:04d}"
    parts = {s: table.filter(pc.equal(table.column("split"), s)) for s in SPLITS}
    files: dict[str, dict[str, Any]] = {}
    blobs: dict[str, bytes] = {}
    for s, t in parts.items():
        data = _parquet_bytes(t)
        blobs[SPLIT_FILES[s]] = data
        files[SPLIT_FILES[s]] = {"sha256": _sha256(data), "rows": t.num_rows, "bytes": len(data)}

    manifest: dict[str, Any] = {
        "dataset": dataset,
        "version": version,
        "parent": parent.version if parent else None,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "schema_version": SCHEMA_VERSION,
        "rows": {s: parts[s].num_rows for s in SPLITS},
        "class_counts": {s: _class_counts(parts[s]) for s in SPLITS},
        "label_sources": dict(sorted(Counter(str(x) for x in table.column("label_source").to_pylist()).items())),
        "diff": _diff(table, parent_all),
        "code_version": _code_version(),
        "config": cfg.model_dump(),
        "extra": extra or {},
    }
    card = _render_card(manifest, parts, cfg).encode()
    blobs["card.html"] = card
    files["card.html"] = {"sha256": _sha256(card), "rows": None, "bytes": len(card)}
    manifest["files"] = files

    target = posixpath.join(base, version)
    tmp = posixpath.join(base, f".tmp-{version}-{uuid.uuid4().hex}")
    for fname, data in blobs.items():
        root.write_bytes(posixpath.join(tmp, fname), data)
    root.write_json(posixpath.join(tmp, "manifest.json"), manifest)
    if root.exists(target):
        root.fs.rm(root.path(tmp), recursive=True)
        raise FileExistsError(f"release {dataset}/{version} already exists; releases are immutable")
    if root.is_local:
        for fname in [*blobs, "manifest.json"]:
            os.chmod(root.path(tmp, fname), 0o444)
        # rename(2) of a directory is atomic and fails if another writer created a non-empty target.
        os.rename(root.path(tmp), root.path(target))
    else:
        root.fs.mv(root.path(tmp), root.path(target), recursive=True)
    return manifest

"""Dataset releases: stable group-aware splits, immutable versioned folders, manifests and data cards."""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import os
import platform
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
MANIFEST_FILE = "manifest.json"
CARD_FILE = "card.html"
# `sha256sum -c SHA256SUMS` inside a release folder verifies it without Flywheel.
CHECKSUMS_FILE = "SHA256SUMS"
# Bumped when the manifest gains or changes keys; load_release accepts this version and older ones.
MANIFEST_FORMAT = 2

# ImageNet statistics: the usual default (torchvision, timm); fine for small CNNs trained from scratch.
_NORMALIZE = {"__class_fullname__": "Normalize", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "p": 1.0}

# Named augmentation recipes, as data: albumentations 2.x transform entries ({"__class_fullname__": name, **params},
# the format of `A.to_dict`). training.augment builds them; it fills "size" or "height"/"width" with the
# trainer's image size, so one recipe serves any input size. corpus never imports albumentations.
AUGMENTATION_RECIPES: dict[str, list[dict[str, Any]]] = {
    "train-basic": [
        # scale=(0.6, 1.0): milder than torchvision's (0.08, 1.0), since small web images often fill the
        # frame with their subject and a tiny crop would lose the class.
        {"__class_fullname__": "RandomResizedCrop", "scale": [0.6, 1.0], "p": 1.0},
        {"__class_fullname__": "HorizontalFlip", "p": 0.5},
        # Small jitter (0.1-0.2) as in albumentations' own classification examples.
        {
            "__class_fullname__": "ColorJitter",
            "brightness": 0.2,
            "contrast": 0.2,
            "saturation": 0.2,
            "hue": 0.02,
            "p": 0.5,
        },
        _NORMALIZE,
    ],
    # Geometry-only: for classes told apart by colour, where jitter would blur the boundary.
    "train-light": [
        {"__class_fullname__": "Resize", "p": 1.0},
        {"__class_fullname__": "HorizontalFlip", "p": 0.5},
        _NORMALIZE,
    ],
    "eval": [{"__class_fullname__": "Resize", "p": 1.0}, _NORMALIZE],
}


class ReleaseIntegrityError(Exception):
    """A release file is missing or its bytes no longer match the SHA-256 in the manifest."""


class AugmentationRecipe(BaseModel):
    """The augmentation a release is meant to be trained with: a named recipe stored as data.

    `transforms` (training) and `eval_transforms` (val, test, prediction) are albumentations transform
    entries; left empty they are filled from AUGMENTATION_RECIPES[name] (and ["eval"]), so the manifest
    always holds the full recipe and a later change of the named defaults cannot change an old release.
    """

    name: str = Field("train-basic", description="Recipe name (train-basic, train-light, or your own).")
    transforms: list[dict[str, Any]] = Field(default_factory=list, description="Training transforms, in order.")
    eval_transforms: list[dict[str, Any]] = Field(default_factory=list, description="Val/test/prediction transforms.")

    @model_validator(mode="after")
    def _fill_named(self) -> AugmentationRecipe:
        if not self.transforms:
            if self.name not in AUGMENTATION_RECIPES:
                raise ValueError(
                    f"unknown recipe {self.name!r} and no transforms given; recipes: {sorted(AUGMENTATION_RECIPES)}"
                )
            self.transforms = [dict(t) for t in AUGMENTATION_RECIPES[self.name]]
        if not self.eval_transforms:
            self.eval_transforms = [dict(t) for t in AUGMENTATION_RECIPES["eval"]]
        for entry in [*self.transforms, *self.eval_transforms]:
            if not isinstance(entry.get("__class_fullname__"), str):
                raise ValueError(f"each transform needs a '__class_fullname__' string, got {entry}")
        return self


class ReleaseConfig(BaseModel):
    """How a release is split, augmented and described."""

    # 70/15/15 is the common default of dataset tooling (e.g. scikit-learn examples, HF split recipes).
    train: float = Field(0.7, ge=0.0, le=1.0, description="Target fraction of each label in train.")
    val: float = Field(0.15, ge=0.0, le=1.0, description="Target fraction of each label in val.")
    test: float = Field(0.15, ge=0.0, le=1.0, description="Target fraction of each label in test.")
    split_key: str = Field(
        "flywheel-split-v1", description="Salt of the keyed hash ordering new groups; change it to reshuffle."
    )
    group_by_page: bool = Field(True, description="Keep images that share a page_url in one split.")
    augmentation: AugmentationRecipe = Field(default_factory=AugmentationRecipe)
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

    @property
    def augmentation(self) -> AugmentationRecipe:
        """The release's recipe; releases older than the recipe field get the default one."""
        return AugmentationRecipe(**self.manifest.get("augmentation", {}))


# ---------------------------------------------------------------- splits


def group_records(records: pa.Table, by_page: bool = True) -> list[str]:
    """The split group of each row: rows sharing a `near_dup_cluster` or (with `by_page`) a `page_url` are
    joined, transitively (union-find), so a cluster spread over two pages pulls both pages together.

    A group is named after its smallest record_id, so the names do not depend on row order.
    """
    ids = records.column("record_id").to_pylist()
    parent = list(range(len(ids)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    keys = ["near_dup_cluster"] + (["page_url"] if by_page else [])
    for name in keys:
        if name not in records.column_names:
            continue
        first: dict[str, int] = {}
        for i, value in enumerate(records.column(name).to_pylist()):
            if value is None or value == "":
                continue
            if value in first:
                a, b = find(first[value]), find(i)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            else:
                first[value] = i
    smallest: dict[int, str] = {}
    for i, rid in enumerate(ids):
        r = find(i)
        if r not in smallest or rid < smallest[r]:
            smallest[r] = rid
    return [f"g:{smallest[find(i)]}" for i in range(len(ids))]


def _majority(values: list[str]) -> str:
    """Most common value; ties go to the smallest, so the result never depends on row order."""
    counts = Counter(values)
    best = max(counts.values())
    return min(v for v, n in counts.items() if n == best)


def assign_splits(records: pa.Table, cfg: ReleaseConfig, previous: dict[str, str] | None = None) -> pa.Array:
    """The split of each row of `records` (a string array aligned with the rows).

    Groups come from `group_records` (near-duplicate cluster + source page). A record that had a split
    in `previous` (record_id -> split, from the parent release) always keeps it; the new members of a
    group with old members join the old members' (majority) split. New groups, taken in the order of
    sha256(split_key + group), each go to the split furthest below its target share of the group's
    majority label, counting the rows of that label already assigned; so splits are stratified,
    deterministic, and adding data never moves an existing item. The one case a group can straddle
    splits is a new record joining groups that the parent put in different splits; `find_split_leaks`
    reports it, because moving a released item would be worse.
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
    groups = group_records(records, cfg.group_by_page)

    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)

    fractions = cfg.fractions()
    counts: dict[str, Counter] = defaultdict(Counter)  # label -> split -> rows
    row_split: list[str | None] = [previous.get(r) for r in ids]
    fresh: list[str] = []
    for g, rows in members.items():
        kept = [row_split[i] for i in rows if row_split[i] is not None]
        if not kept:
            fresh.append(g)
            continue
        joined = _majority(kept)
        for i in rows:
            if row_split[i] is None:
                row_split[i] = joined
            counts[labels[i]][row_split[i]] += 1

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
        for i in rows:
            row_split[i] = split
            counts[labels[i]][split] += 1

    return pa.array(row_split, type=pa.string())


def find_split_leaks(records: pa.Table, splits: pa.Array | list[str], by_page: bool = True) -> list[dict[str, Any]]:
    """Groups (near-duplicate cluster / page) whose rows sit in more than one split, each with its reason.

    Returns [{"group", "splits": {split: rows}, "reason"}]; empty when no group straddles.
    """
    split_list = splits.to_pylist() if isinstance(splits, pa.Array | pa.ChunkedArray) else list(splits)
    per_group: dict[str, Counter] = defaultdict(Counter)
    for g, s in zip(group_records(records, by_page), split_list, strict=True):
        per_group[g][s] += 1
    return [
        {
            "group": g,
            "splits": dict(sorted(c.items())),
            "reason": "new records link groups the parent release put in different splits; "
            "released items never move, so this group straddles splits",
        }
        for g, c in sorted(per_group.items())
        if len(c) > 1
    ]


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


def parse_release_ref(ref: str) -> tuple[str, str]:
    """("D", "vN" or "latest") of a reference "D@vN", "D@N", "D@latest" or just "D" (meaning latest)."""
    dataset, _, version = ref.partition("@")
    if not dataset:
        raise ValueError(f"bad release reference {ref!r}: expected DATASET@VERSION, e.g. demo@v0002")
    return dataset, _normalise_version(version) if version else "latest"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _release_id(files: dict[str, dict[str, Any]]) -> str:
    """Content address of a release: SHA-256 over its data files' names and SHA-256s (the card and the
    checksum list are left out: the card embeds the build time). Equal data, equal id."""
    lines = "".join(
        f"{name}\t{entry['sha256']}\n" for name, entry in sorted(files.items()) if name.endswith(".parquet")
    )
    return "sha256:" + _sha256(lines.encode())


def _check_manifest(manifest: dict, dataset: str, name: str, rel: str) -> None:
    if manifest.get("dataset") != dataset or manifest.get("version") != name:
        raise ReleaseIntegrityError(
            f"{rel}/{MANIFEST_FILE} names {manifest.get('dataset')}/{manifest.get('version')}, not {dataset}/{name}"
        )
    if str(manifest.get("schema_version")) != SCHEMA_VERSION:
        raise ReleaseIntegrityError(
            f"{rel} uses record schema v{manifest.get('schema_version')}, this code reads v{SCHEMA_VERSION}"
        )
    if int(manifest.get("manifest_format", 1)) > MANIFEST_FORMAT:
        raise ReleaseIntegrityError(
            f"{rel}/{MANIFEST_FILE} has format {manifest['manifest_format']}, newer than this code's {MANIFEST_FORMAT}"
        )
    files = manifest.get("files", {})
    if "release_id" in manifest and manifest["release_id"] != _release_id(files):
        raise ReleaseIntegrityError(f"{rel}/{MANIFEST_FILE} was edited: its file list no longer matches its release_id")


def load_release(root: DataRoot, dataset: str, version: str | int = "latest") -> Release:
    """Load one release, verifying every file's SHA-256 against its manifest.

    Raises FileNotFoundError (listing the versions that exist) for an unknown version and
    ReleaseIntegrityError naming the file when a file is missing, added, or its bytes changed, when the
    manifest was edited or names another release, or when a split file's rows disagree with it.
    """
    name = _resolve(root, dataset, version)
    rel = posixpath.join(_dataset_dir(dataset), name)
    try:
        manifest = root.read_json(posixpath.join(rel, MANIFEST_FILE))
    except FileNotFoundError as exc:
        raise ReleaseIntegrityError(f"{rel}/{MANIFEST_FILE} is missing") from exc
    _check_manifest(manifest, dataset, name, rel)
    listed = manifest.get("files", {})
    present = {posixpath.basename(p) for p in root.list(rel)}
    unexpected = sorted(present - set(listed) - {MANIFEST_FILE})
    if unexpected:
        raise ReleaseIntegrityError(f"{rel} holds files the manifest does not list: {unexpected}")
    tables: dict[str, pa.Table] = {}
    for fname, entry in sorted(listed.items()):
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
    for split, fname in SPLIT_FILES.items():
        if fname not in tables:
            raise ReleaseIntegrityError(f"{rel}/{fname} is not in the manifest")
        t = tables[fname]
        wrong = t.num_rows - pc.sum(pc.equal(t.column("split"), split)).as_py() if t.num_rows else 0
        if wrong or t.num_rows != manifest.get("rows", {}).get(split, t.num_rows):
            raise ReleaseIntegrityError(f"{rel}/{fname}: rows or split column disagree with the manifest")
    return Release(
        manifest=manifest,
        version=name,
        train=tables[SPLIT_FILES["train"]],
        val=tables[SPLIT_FILES["val"]],
        test=tables[SPLIT_FILES["test"]],
        path=root.path(rel),
    )


# ---------------------------------------------------------------- building


def _code_version() -> dict[str, Any]:
    """The commit that built a release, whether the checkout had uncommitted changes, and the key libraries."""
    project_dir = Path(__file__).resolve().parent.parent
    out: dict[str, Any] = {"commit": None, "dirty": None}
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project_dir, capture_output=True, text=True, timeout=10, check=False
        )
        if head.returncode == 0 and head.stdout.strip():
            out["commit"] = head.stdout.strip()
            status = subprocess.run(
                ["git", "status", "--porcelain", "--", "corpus"],
                cwd=project_dir,
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            out["dirty"] = bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    versions = {}
    for dist in ("flywheel", "pyarrow", "pydantic"):
        try:
            versions[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            versions[dist] = None
    out["python"] = platform.python_version()
    out["packages"] = versions
    out["builder"] = "corpus.releases.build_release"
    return out


def _code_label(code: dict[str, Any]) -> str:
    if code.get("commit"):
        return f"git:{code['commit']}" + ("+dirty" if code.get("dirty") else "")
    flywheel = code.get("packages", {}).get("flywheel")
    return f"flywheel=={flywheel}" if flywheel else "unknown"


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


def compute_diff(new: pa.Table, parent: pa.Table | None) -> dict[str, Any]:
    """What changed from `parent` to `new` (both with record_id, label, split).

    Returns {"added", "removed", "relabelled", "moved"} counts, "by_label" ({label: {"added", "removed",
    "relabelled_in", "relabelled_out"}}) and "relabel_pairs" ({"old -> new": count}).
    """
    ids = new.column("record_id").to_pylist()
    labels = new.column("label").to_pylist()
    splits = new.column("split").to_pylist()
    by_label: dict[str, Counter] = defaultdict(Counter)
    if parent is None:
        for lab in labels:
            by_label[lab]["added"] += 1
        return {
            "added": new.num_rows,
            "removed": 0,
            "relabelled": 0,
            "moved": 0,
            "by_label": {k: dict(v) for k, v in sorted(by_label.items())},
            "relabel_pairs": {},
        }
    p_ids = parent.column("record_id").to_pylist()
    old = dict(zip(p_ids, parent.column("label").to_pylist(), strict=True))
    old_split = dict(zip(p_ids, parent.column("split").to_pylist(), strict=True))
    pairs: Counter = Counter()
    added = relabelled = moved = 0
    for rid, lab, split in zip(ids, labels, splits, strict=True):
        if rid not in old:
            added += 1
            by_label[lab]["added"] += 1
            continue
        if old[rid] != lab:
            relabelled += 1
            pairs[f"{old[rid]} -> {lab}"] += 1
            by_label[lab]["relabelled_in"] += 1
            by_label[old[rid]]["relabelled_out"] += 1
        if old_split[rid] != split:
            moved += 1
    gone = set(old) - set(ids)
    for rid in gone:
        by_label[old[rid]]["removed"] += 1
    return {
        "added": added,
        "removed": len(gone),
        "relabelled": relabelled,
        "moved": moved,
        "by_label": {k: dict(v) for k, v in sorted(by_label.items())},
        "relabel_pairs": dict(sorted(pairs.items())),
    }


def _histogram(values: list[float], bins: int = 10) -> list[int]:
    """Counts of `values` in `bins` equal bins over [0, 1] (1.0 goes to the last bin)."""
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, max(0, int(v * bins)))] += 1
    return counts


def summarize_labels(table: pa.Table) -> dict[str, Any]:
    """Label provenance of released rows: source mix, vote agreement and a label_confidence histogram.

    `label_confidence` is the winning label's vote share (or a model's probability): low = doubtful label.
    "agreement" covers rows with 2+ annotators: "unanimous_share" in [0, 1] (low = annotators disagree)
    and "mean_vote_share".
    """
    sources = Counter("unknown" if s is None else s for s in table.column("label_source").to_pylist())
    n = table.num_rows
    conf = [float(c) for c in table.column("label_confidence").to_pylist() if c is not None]
    multi = [
        (float(c) if c is not None else None)
        for c, a in zip(
            table.column("label_confidence").to_pylist(), table.column("annotators").to_pylist(), strict=True
        )
        if a is not None and len(a) >= 2
    ]
    multi_known = [c for c in multi if c is not None]
    return {
        "label_sources": dict(sorted(sources.items())),
        "label_source_share": {k: round(v / n, 4) for k, v in sorted(sources.items())} if n else {},
        "agreement": {
            "multi_annotated": len(multi),
            "unanimous_share": (sum(c >= 1.0 for c in multi_known) / len(multi_known)) if multi_known else None,
            "mean_vote_share": (sum(multi_known) / len(multi_known)) if multi_known else None,
        },
        "confidence_histogram": {"bins": 10, "range": [0.0, 1.0], "counts": _histogram(conf), "missing": n - len(conf)},
    }


def summarize_curation(table: pa.Table) -> dict[str, Any]:
    """Curation and privacy statistics of released rows: kinds, sources, near-duplicate clusters, pages with
    several images, PII found per entity type, faces blurred, EXIF stripped, scrub versions."""
    kinds = Counter(table.column("kind").to_pylist())
    sources = Counter("unknown" if s is None else s for s in table.column("source").to_pylist())
    clusters = Counter(c for c in table.column("near_dup_cluster").to_pylist() if c)
    page_kind = zip(table.column("page_url").to_pylist(), table.column("kind").to_pylist(), strict=True)
    pages = Counter(p for p, k in page_kind if p and k == "image")
    pii: Counter = Counter()
    rows_with_pii = 0
    for entry in table.column("pii_counts").to_pylist():
        if not entry:
            continue
        found = {k: v for k, v in entry if v}
        rows_with_pii += bool(found)
        pii.update(found)
    faces = [f for f in table.column("faces_blurred").to_pylist() if f is not None]
    exif = table.column("exif_stripped").to_pylist()
    return {
        "kinds": dict(sorted(kinds.items())),
        "sources": dict(sorted(sources.items())),
        "near_dup_clusters": len(clusters),
        "rows_in_near_dup_clusters": sum(clusters.values()),
        "pages_with_several_images": sum(1 for n in pages.values() if n > 1),
        "rows_on_shared_pages": sum(n for n in pages.values() if n > 1),
        "pii_entities": dict(sorted(pii.items())),
        "rows_with_pii_found": rows_with_pii,
        "faces_blurred": sum(faces),
        "rows_with_faces_blurred": sum(1 for f in faces if f > 0),
        "exif_stripped": sum(1 for e in exif if e),
        "scrub_versions": sorted({v for v in table.column("scrub_version").to_pylist() if v}),
    }


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


# ---------------------------------------------------------------- the card (plain HTML + inline SVG, offline)

_SPLIT_COLOURS = {"train": "#4c78a8", "val": "#f58518", "test": "#54a24b"}


def _svg_bars(groups: list[str], series: dict[str, list[int]], colours: dict[str, str], title: str) -> str:
    """A grouped bar chart as inline SVG: one group per entry of `groups`, one bar per series."""
    esc = html.escape
    width_bar, gap, height, left, bottom = 14, 18, 160, 40, 40
    n_series = max(len(series), 1)
    group_w = n_series * width_bar + gap
    width = left + max(len(groups), 1) * group_w + 20
    top = max([v for vals in series.values() for v in vals] + [1])
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + bottom + 30}" '
        f'role="img" aria-label="{esc(title)}"><title>{esc(title)}</title>',
        f'<line x1="{left}" y1="{height + 10}" x2="{width}" y2="{height + 10}" stroke="#888"/>',
        f'<text x="{left - 4}" y="18" font-size="10" text-anchor="end">{top}</text>',
    ]
    for gi, g in enumerate(groups):
        x0 = left + gi * group_w
        for si, (name, vals) in enumerate(series.items()):
            v = vals[gi]
            h = round(height * v / top)
            x = x0 + si * width_bar
            parts.append(
                f'<rect x="{x}" y="{height + 10 - h}" width="{width_bar - 2}" height="{h}" '
                f'fill="{colours.get(name, "#888")}"><title>{esc(g)} · {esc(name)}: {v}</title></rect>'
            )
        label_x = x0 + n_series * width_bar / 2
        parts.append(f'<text x="{label_x}" y="{height + 24}" font-size="10" text-anchor="middle">{esc(g[:14])}</text>')
    for si, name in enumerate(series):
        parts.append(
            f'<rect x="{left + si * 70}" y="{height + bottom + 4}" width="10" height="10" '
            f'fill="{colours.get(name, "#888")}"/><text x="{left + si * 70 + 14}" y="{height + bottom + 13}" '
            f'font-size="10">{esc(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _table_html(rows: list[tuple[str, Any]]) -> str:
    esc = html.escape
    body = "".join(f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>" if rows else "<p><i>none</i></p>"


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
    balance_svg = _svg_bars(
        labels,
        {s: [manifest["class_counts"][s].get(lab, 0) for lab in labels] for s in SPLITS},
        _SPLIT_COLOURS,
        "class balance per split",
    )
    hist = manifest["confidence_histogram"]
    edges = [f"{i / hist['bins']:.1f}" for i in range(hist["bins"])]
    conf_svg = _svg_bars(edges, {"labels": hist["counts"]}, {"labels": "#72b7b2"}, "label confidence histogram")

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
    diff_rows = [(k, diff[k]) for k in ("added", "removed", "relabelled", "moved")]
    by_label = diff["by_label"]
    diff_labels = sorted(by_label)
    diff_svg = _svg_bars(
        diff_labels,
        {k: [by_label[lab].get(k, 0) for lab in diff_labels] for k in ("added", "removed", "relabelled_in")},
        {"added": "#54a24b", "removed": "#e45756", "relabelled_in": "#eeca3b"},
        "changes since parent per label",
    )
    mix = [(k, f"{v} ({manifest['label_source_share'].get(k, 0):.0%})") for k, v in manifest["label_sources"].items()]
    agreement = manifest["agreement"]
    agree_rows = [(k, v) for k, v in agreement.items() if k != "annotators"]
    reported = agreement.get("annotators")
    if isinstance(reported, dict):
        agree_rows += [(f"annotators: {k}", v) for k, v in reported.items()]
    elif reported is not None:
        agree_rows.append(("annotators", reported))
    cur = manifest["curation"]
    cur_rows = [
        (k, ", ".join(f"{a}: {b}" for a, b in v.items()) if isinstance(v, dict) else v)
        for k, v in cur.items()
        if k != "pii_entities"
    ]
    pii_rows = list(cur["pii_entities"].items()) or [("entities found", 0)]
    leaks = manifest["split_leaks"]
    extra = esc(json.dumps(manifest.get("extra", {}), indent=2, sort_keys=True, default=str))
    recipe = esc(json.dumps(manifest["augmentation"], indent=2))
    code = manifest["code"]
    built_by = [("commit", code.get("commit")), ("dirty", code.get("dirty")), ("python", code.get("python"))]
    built_by += list(code.get("packages", {}).items())
    title = f"{esc(manifest['dataset'])} {esc(manifest['version'])}"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:70em}}
table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}
th{{background:#f4f4f4}}.cls{{margin:1em 0}}.cls img{{margin:2px;border:1px solid #ddd}}
pre{{background:#f8f8f8;padding:8px;overflow:auto}}.warn{{color:#a00}}
</style></head><body>
<h1>{title}</h1>
<p>parent: {esc(str(manifest["parent"]))} &middot; created {esc(manifest["created_at"])} &middot;
code {esc(manifest["code_version"])} &middot; schema v{esc(manifest["schema_version"])} &middot;
release id <code>{esc(manifest["release_id"])}</code></p>
<h2>Class balance</h2>{balance_svg}<table><tr><th>label</th>{head}</tr>{"".join(rows)}</table>
<h2>Changes since parent</h2>{_table_html(diff_rows)}{diff_svg}
<h3>Relabelled</h3>{_table_html(list(diff["relabel_pairs"].items()))}
<h2>Labels</h2><h3>Sources</h3>{_table_html(mix)}
<h3>Annotator agreement</h3>{_table_html(agree_rows)}
<h3>Label confidence (vote share; low = doubtful)</h3>{conf_svg}
<h2>Split integrity</h2>
<p class="{"warn" if leaks["groups"] else ""}">groups straddling splits: {leaks["groups"]}
({leaks["rows"]} rows){"; " + esc(leaks["examples"][0]["reason"]) if leaks["examples"] else ""}</p>
<h2>Curation and privacy</h2>{_table_html(cur_rows)}<h3>PII found (before scrubbing)</h3>{_table_html(pii_rows)}
<h2>Examples</h2>{"".join(thumbs)}
<h2>Augmentation recipe</h2><pre>{recipe}</pre>
<h2>Built by</h2>{_table_html(built_by)}
<h2>Extra</h2><pre>{extra}</pre>
</body></html>
"""


def _class_counts(table: pa.Table) -> dict[str, int]:
    return dict(sorted(Counter(table.column("label").to_pylist()).items()))


def _checksums(files: dict[str, dict[str, Any]]) -> bytes:
    return "".join(f"{entry['sha256']}  {name}\n" for name, entry in sorted(files.items())).encode()


def build_release(
    root: DataRoot, dataset: str, records: pa.Table, cfg: ReleaseConfig, *, extra: dict | None = None
) -> dict:
    """Write the next release of `dataset` from labeled kept records and return its manifest.

    The parent is the latest existing release; records it held keep their split. When the content
    (record_ids, labels, splits) and the augmentation recipe equal the parent's, nothing is written and
    the parent's manifest is returned with "unchanged": True. The folder is written under a temporary
    name and moved into place; an existing version is never overwritten; files are made read-only on
    local roots. `extra["agreement"]` (labeling.quality.compute_agreement's dict) is also shown as the
    annotators' agreement; `extra["curation"]` (e.g. stage reports) is kept and shown on the card.
    """
    table = _validate_records(records)
    extra = dict(extra or {})
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
    recipe = cfg.augmentation.model_dump()

    if (
        parent_all is not None
        and _content_key(table) == _content_key(parent_all)
        and parent.manifest.get("augmentation", recipe) == recipe
    ):
        return {**parent.manifest, "unchanged": True}

    version = f"v{(int(_VERSION_RE.match(versions[-1]).group(1)) + 1) if versions else 1:04d}"
    parts = {s: table.filter(pc.equal(table.column("split"), s)) for s in SPLITS}
    files: dict[str, dict[str, Any]] = {}
    blobs: dict[str, bytes] = {}
    for s, t in parts.items():
        data = _parquet_bytes(t)
        blobs[SPLIT_FILES[s]] = data
        files[SPLIT_FILES[s]] = {"sha256": _sha256(data), "rows": t.num_rows, "bytes": len(data)}

    leaks = find_split_leaks(table, table.column("split"), cfg.group_by_page)
    labels_summary = summarize_labels(table)
    labels_summary["agreement"]["annotators"] = extra.get("agreement")
    code = _code_version()
    manifest: dict[str, Any] = {
        "dataset": dataset,
        "version": version,
        "parent": parent.version if parent else None,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "schema_version": SCHEMA_VERSION,
        "manifest_format": MANIFEST_FORMAT,
        "rows": {s: parts[s].num_rows for s in SPLITS},
        "class_counts": {s: _class_counts(parts[s]) for s in SPLITS},
        **labels_summary,
        "curation": summarize_curation(table),
        "diff": compute_diff(table, parent_all),
        "split_leaks": {
            "groups": len(leaks),
            "rows": sum(sum(leak["splits"].values()) for leak in leaks),
            "examples": leaks[:10],
        },
        "augmentation": recipe,
        "code_version": _code_label(code),
        "code": code,
        "config": cfg.model_dump(),
        "extra": extra,
    }
    manifest["release_id"] = _release_id(files)
    card = _render_card(manifest, parts, cfg).encode()
    blobs[CARD_FILE] = card
    files[CARD_FILE] = {"sha256": _sha256(card), "rows": None, "bytes": len(card)}
    checksums = _checksums(files)
    blobs[CHECKSUMS_FILE] = checksums
    files[CHECKSUMS_FILE] = {"sha256": _sha256(checksums), "rows": None, "bytes": len(checksums)}
    manifest["files"] = files

    target = posixpath.join(base, version)
    tmp = posixpath.join(base, f".tmp-{version}-{uuid.uuid4().hex}")
    for fname, data in blobs.items():
        root.write_bytes(posixpath.join(tmp, fname), data)
    root.write_json(posixpath.join(tmp, MANIFEST_FILE), manifest)
    if root.exists(target):
        root.fs.rm(root.path(tmp), recursive=True)
        raise FileExistsError(f"release {dataset}/{version} already exists; releases are immutable")
    if root.is_local:
        for fname in [*blobs, MANIFEST_FILE]:
            os.chmod(root.path(tmp, fname), 0o444)
        # rename(2) of a directory is atomic and fails if another writer created a non-empty target.
        os.rename(root.path(tmp), root.path(target))
    else:
        # No atomic folder rename on object storage (a move is a copy per object): move the files one by
        # one with the manifest last, so a release whose manifest exists is whole.
        for fname in [*blobs, MANIFEST_FILE]:
            root.fs.mv(root.path(tmp, fname), root.path(target, fname))
        if root.exists(tmp):
            root.fs.rm(root.path(tmp), recursive=True)
    return manifest

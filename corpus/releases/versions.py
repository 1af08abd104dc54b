"""Release versions: the folder layout, listing and resolving versions, and loading a release verified."""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from corpus.releases.integrity import ManifestError, resolve_signing_key, verify_manifest
from corpus.releases.recipes import AugmentationRecipe
from corpus.releases.storage import from_release_storage
from corpus.schema import SCHEMA_VERSION, SPLITS, conform
from corpus.store import DataRoot
from corpus.tasks import task_of

VERSION_RE = re.compile(r"^v(\d{4,})$")
SPLIT_FILES = {split: f"{split}.parquet" for split in SPLITS}
MANIFEST_FILE = "manifest.json"
CARD_FILE = "card.html"
# `sha256sum -c SHA256SUMS` inside a release folder verifies it without Flywheel.
CHECKSUMS_FILE = "SHA256SUMS"
# Bumped when the manifest gains or changes keys. 3: manifest_digest (and signature); load_release refuses
# manifests without a digest, so older formats no longer load. 4: labels (the ordered label list), description,
# licence, sources; split files store pii_counts as list<struct<entity, count>> (format 3 ones still load).
MANIFEST_FORMAT = 4


class ReleaseIntegrityError(Exception):
    """A release's manifest is unreadable, unverified or edited, or a file is missing, added or changed."""


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


def dataset_folder(dataset: str) -> str:
    """The folder (relative to the data root) holding every release of `dataset`."""
    if not dataset or "/" in dataset or dataset.startswith("."):
        raise ValueError(f"bad dataset name {dataset!r}: use a plain folder name")
    return posixpath.join("releases", dataset)


def list_releases(root: DataRoot, dataset: str) -> list[str]:
    """The versions of `dataset` that exist, sorted ("v0001", "v0002", ...)."""
    names = [n for n in root.list_dirs(dataset_folder(dataset)) if VERSION_RE.match(n)]
    return sorted(names, key=lambda n: int(VERSION_RE.match(n).group(1)))


def next_version(taken: list[str]) -> str:
    """The version after the newest of the names in `taken` (others are ignored; "v0001" when none)."""
    newest = max((int(m.group(1)) for v in taken if (m := VERSION_RE.match(v))), default=0)
    return f"v{newest + 1:04d}"


def normalise_version(version: str | int) -> str:
    """ "vNNNN" for a bare number (3 or "3" -> "v0003"); anything else as given."""
    text = str(version)
    if text.isdigit():
        return f"v{int(text):04d}"
    return text


def resolve_version(root: DataRoot, dataset: str, version: str | int) -> str:
    """The existing version meant by `version` ("latest", "vN" or N); FileNotFoundError lists the versions."""
    versions = list_releases(root, dataset)
    if not versions:
        raise FileNotFoundError(f"dataset {dataset!r} has no releases under {root.path(dataset_folder(dataset))}")
    if str(version) == "latest":
        return versions[-1]
    name = normalise_version(version)
    if name not in versions:
        raise FileNotFoundError(f"release {dataset}/{name} does not exist; versions: {', '.join(versions)}")
    return name


def parse_release_ref(ref: str) -> tuple[str, str]:
    """("D", "vN" or "latest") of a reference "D@vN", "D@N", "D@latest" or just "D" (meaning latest)."""
    dataset, _, version = ref.partition("@")
    if not dataset:
        raise ValueError(f"bad release reference {ref!r}: expected DATASET@VERSION, e.g. demo@v0002")
    return dataset, normalise_version(version) if version else "latest"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def compute_release_id(files: dict[str, dict[str, Any]]) -> str:
    """Content address of a release: SHA-256 over its data files' names and SHA-256s (the card and the
    checksum list are left out: the card embeds the build time). Equal data, equal id."""
    lines = "".join(
        f"{name}\t{entry['sha256']}\n" for name, entry in sorted(files.items()) if name.endswith(".parquet")
    )
    return "sha256:" + sha256_hex(lines.encode())


def _read_manifest(root: DataRoot, rel: str, key: str | None) -> dict[str, Any]:
    """The manifest of release folder `rel`, parsed and verified (digest, and signature with a key)."""
    path = posixpath.join(rel, MANIFEST_FILE)
    try:
        manifest = json.loads(root.read_bytes(path))
    except FileNotFoundError as exc:
        raise ReleaseIntegrityError(f"{path} is missing") from exc
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
        raise ReleaseIntegrityError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise ReleaseIntegrityError(f"{path} is not a JSON object")
    fmt = manifest.get("manifest_format", 1)
    if isinstance(fmt, int) and fmt > MANIFEST_FORMAT:
        raise ReleaseIntegrityError(f"{path} has format {fmt}, newer than this code's {MANIFEST_FORMAT}")
    try:
        verify_manifest(manifest, key)
    except ManifestError as exc:
        raise ReleaseIntegrityError(f"{path} {exc}") from exc
    return manifest


def _check_manifest(manifest: dict, dataset: str, name: str, rel: str) -> None:
    if manifest.get("dataset") != dataset or manifest.get("version") != name:
        raise ReleaseIntegrityError(
            f"{rel}/{MANIFEST_FILE} names {manifest.get('dataset')}/{manifest.get('version')}, not {dataset}/{name}"
        )
    if str(manifest.get("schema_version")) != SCHEMA_VERSION:
        raise ReleaseIntegrityError(
            f"{rel} uses record schema v{manifest.get('schema_version')}, this code reads v{SCHEMA_VERSION}"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(e, dict) and isinstance(e.get("sha256"), str) for e in files.values()
    ):
        raise ReleaseIntegrityError(f"{rel}/{MANIFEST_FILE} has no valid file list")
    if manifest.get("release_id") != compute_release_id(files):
        raise ReleaseIntegrityError(f"{rel}/{MANIFEST_FILE} was edited: its file list no longer matches its release_id")


def _read_verified_files(root: DataRoot, rel: str, listed: dict[str, dict[str, Any]]) -> dict[str, pa.Table]:
    """The split tables of release folder `rel`, after checking its files are exactly those `listed`, each
    with the listed SHA-256."""
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
        digest = sha256_hex(data)
        if digest != entry["sha256"]:
            raise ReleaseIntegrityError(
                f"{fpath} was modified: sha256 {digest[:16]}… does not match the manifest's {entry['sha256'][:16]}…"
            )
        if fname.endswith(".parquet"):
            tables[fname] = conform(from_release_storage(pq.read_table(pa.BufferReader(data))))
    return tables


def load_release(
    root: DataRoot, dataset: str, version: str | int = "latest", *, signing_key: str | None = None
) -> Release:
    """Load one release, verifying its manifest (digest; signature when a signing key is set) and every
    file's SHA-256 against it.

    The key is `signing_key`, else the FLYWHEEL_RELEASE_SIGNING_KEY setting; with one, unsigned
    or wrongly signed releases are refused. Raises FileNotFoundError (listing the versions that exist) for
    an unknown version and ReleaseIntegrityError (one line, naming the file) when the manifest is not
    JSON, has no digest, was edited, is unsigned or badly signed, or names another release, when a file is
    missing, added, or its bytes changed, or when a split file's rows disagree with the manifest.
    """
    name = resolve_version(root, dataset, version)
    rel = posixpath.join(dataset_folder(dataset), name)
    manifest = _read_manifest(root, rel, resolve_signing_key(signing_key))
    _check_manifest(manifest, dataset, name, rel)
    tables = _read_verified_files(root, rel, manifest["files"])
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


def release_task(root: DataRoot, dataset: str, version: str | int = "latest") -> str:
    """The task type in a release's manifest (corpus.tasks; read unverified: load_release verifies it)."""
    name = resolve_version(root, dataset, version)
    return task_of(root.read_json(posixpath.join(dataset_folder(dataset), name, MANIFEST_FILE)))

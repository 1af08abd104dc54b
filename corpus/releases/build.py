"""Building releases: build_release (the next immutable version of a dataset) and its provenance."""

from __future__ import annotations

import json
import platform
import posixpath
import subprocess
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from corpus.releases.box_release import box_labels, boxes_key, check_boxes_present, count_boxes
from corpus.releases.card import render_card
from corpus.releases.config import ReleaseConfig
from corpus.releases.evalset import choose_eval_set, parent_eval_ids, select_eval_rows
from corpus.releases.integrity import resolve_signing_key, seal_manifest
from corpus.releases.multilabel import count_labels, order_label_set_names, stratum_keys
from corpus.releases.splits import assign_splits, find_split_leaks
from corpus.releases.storage import to_release_storage
from corpus.releases.summaries import compute_diff, summarize_curation, summarize_labels
from corpus.releases.versions import (
    CARD_FILE,
    CHECKSUMS_FILE,
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    SPLIT_FILES,
    Release,
    compute_release_id,
    dataset_folder,
    list_releases,
    load_release,
    next_version,
    sha256_hex,
)
from corpus.schema import SCHEMA_VERSION, SPLITS, conform
from corpus.store import DataRoot
from corpus.tasks import DEFAULT_TASK


def _code_version() -> dict[str, Any]:
    """The commit that built a release, whether the checkout had uncommitted changes, and the key libraries."""
    project_dir = Path(__file__).resolve().parents[2]
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
    out["builder"] = "corpus.releases.build.build_release"
    return out


def _code_label(code: dict[str, Any]) -> str:
    if code.get("commit"):
        return f"git:{code['commit']}" + ("+dirty" if code.get("dirty") else "")
    flywheel = code.get("packages", {}).get("flywheel")
    return f"flywheel=={flywheel}" if flywheel else "unknown"


def _validate_records(records: pa.Table, task: str = DEFAULT_TASK) -> pa.Table:
    table = conform(records)
    if task == "multilabel" and pc.any(pc.is_null(table.column("labels"))).as_py():
        missing = table.filter(pc.is_null(table.column("labels"))).column("record_id").to_pylist()
        raise ValueError(f"{len(missing)} multi-label records have no labels set, e.g. {missing[:3]}")
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


def _content_key(table: pa.Table, detect: bool = False) -> list[tuple[str, ...]]:
    cols = [table.column(c).to_pylist() for c in ("record_id", "label", "split")]
    return sorted(zip(*cols, *([boxes_key(table)] if detect else []), strict=True))


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(to_release_storage(table), sink, compression="zstd", row_group_size=1024)
    return sink.getvalue().to_pybytes()


def order_labels(train: pa.Table) -> list[str]:
    """The label list models use, index -> name: the sorted labels of the train split (training.train's order)."""
    return sorted({lab for lab in train.column("label").to_pylist() if lab is not None})


def _sources(table: pa.Table) -> list[dict[str, Any]]:
    """Where the released rows came from: [{"source", "rows"}], by name ("unknown" for rows without one)."""
    counts = Counter("unknown" if s is None else s for s in table.column("source").to_pylist())
    return [{"source": name, "rows": n} for name, n in sorted(counts.items())]


def _class_counts(table: pa.Table) -> dict[str, int]:
    return dict(sorted(Counter(table.column("label").to_pylist()).items()))


def _checksums(files: dict[str, dict[str, Any]]) -> bytes:
    return "".join(f"{entry['sha256']}  {name}\n" for name, entry in sorted(files.items())).encode()


def _file_entry(data: bytes, rows: int | None) -> dict[str, Any]:
    return {"sha256": sha256_hex(data), "rows": rows, "bytes": len(data)}


def _previous_splits(parent_all: pa.Table | None) -> dict[str, str] | None:
    """record_id -> split of the parent release's rows (None without a parent)."""
    if parent_all is None:
        return None
    return dict(zip(parent_all.column("record_id").to_pylist(), parent_all.column("split").to_pylist(), strict=True))


def _describe(
    dataset: str,
    version: str,
    parent: Release | None,
    parent_all: pa.Table | None,
    table: pa.Table,
    parts: dict[str, pa.Table],
    cfg: ReleaseConfig,
) -> dict[str, Any]:
    """The manifest of a new release, all but its files: counts, summaries, diff, leaks, recipe, provenance.
    `parent_all` is every row of `parent` (None without one)."""
    leaks = find_split_leaks(table, table.column("split"), cfg.group_by_page)
    code = _code_version()
    multilabel = cfg.task == "multilabel"
    return {
        "dataset": dataset,
        "version": version,
        "parent": parent.version if parent else None,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "schema_version": SCHEMA_VERSION,
        "task": cfg.task or DEFAULT_TASK,
        "manifest_format": MANIFEST_FORMAT,
        "rows": {s: parts[s].num_rows for s in SPLITS},
        "labels": box_labels(parts["train"])
        if cfg.task == "detect"
        else order_label_set_names(parts["train"])
        if multilabel
        else order_labels(parts["train"]),
        "description": cfg.description,
        "licence": cfg.licence,
        "sources": _sources(table),
        # multilabel: rows per label (a row counts once for each label of its set)
        "class_counts": {s: (count_labels if multilabel else _class_counts)(parts[s]) for s in SPLITS},
        **({"box_counts": count_boxes(parts)} if cfg.task == "detect" else {}),
        **summarize_labels(table),
        "curation": summarize_curation(table),
        "diff": compute_diff(table, parent_all),
        "split_leaks": {
            "groups": len(leaks),
            "rows": sum(sum(leak["splits"].values()) for leak in leaks),
            "examples": leaks[:10],
        },
        "augmentation": cfg.augmentation.model_dump(),
        "code_version": _code_label(code),
        "code": code,
        "config": cfg.model_dump(),
    }


def _release_files(
    manifest: dict[str, Any], parts: dict[str, pa.Table], cfg: ReleaseConfig, key: str | None, path: str
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(the sealed manifest, the bytes of every file of the release: splits, card, checksums, manifest).

    The manifest gains "release_id", "files" and, over all of that, its digest (and signature with `key`)."""
    blobs = {SPLIT_FILES[s]: _parquet_bytes(t) for s, t in parts.items()}
    files = {name: _file_entry(blobs[name], parts[s].num_rows) for s, name in SPLIT_FILES.items()}
    manifest["release_id"] = compute_release_id(files)
    card = render_card(
        manifest, parts, thumbs_per_class=cfg.card_thumbs_per_class, thumb_px=cfg.card_thumb_px, path=path
    )
    blobs[CARD_FILE] = card.encode()
    files[CARD_FILE] = _file_entry(blobs[CARD_FILE], None)
    blobs[CHECKSUMS_FILE] = _checksums(files)
    files[CHECKSUMS_FILE] = _file_entry(blobs[CHECKSUMS_FILE], None)
    manifest["files"] = files
    sealed = seal_manifest(manifest, key)
    blobs[MANIFEST_FILE] = json.dumps(sealed, indent=2, sort_keys=True).encode()
    return sealed, blobs


EvalScorer = Callable[[pa.Table], list[dict[str, Any]]]


def _eval_set_of(table: pa.Table, parent: Release | None, cfg: ReleaseConfig, version: str) -> dict[str, Any]:
    """The release's fixed eval set (evalset.choose_eval_set), continuing its parent's."""
    parent_manifest = parent.manifest if parent else None
    parent_test = parent.test.column("record_id").to_pylist() if parent else []
    since = ((parent_manifest or {}).get("eval_set") or {}).get("since")
    return choose_eval_set(
        table,
        parent_eval_ids(parent_manifest, parent_test),
        target=cfg.eval_set_size,
        version=version,
        since=since,
        split_key=cfg.split_key,
        by_page=cfg.group_by_page,
    )


def build_release(
    root: DataRoot,
    dataset: str,
    records: pa.Table,
    cfg: ReleaseConfig,
    *,
    extra: dict | None = None,
    signing_key: str | None = None,
    eval_scorer: EvalScorer | None = None,
) -> dict:
    """Write the next release of `dataset` from labeled kept records and return its manifest.

    The parent is the latest existing release; records it held keep their split. When the content
    (record_ids, labels, splits) and the augmentation recipe equal the parent's, nothing is written and
    the parent's manifest is returned with "unchanged": True. The folder is published whole
    (DataRoot.publish_folder, manifest.json last); an existing version is never overwritten; files are
    made read-only on local roots. `extra["agreement"]` (labeling.quality.compute_agreement's dict) is also
    shown as the annotators' agreement; `extra["curation"]` (e.g. stage reports) is kept and shown on the card.
    The manifest carries a digest over its whole content and, with a signing key (`signing_key`, else the
    FLYWHEEL_RELEASE_SIGNING_KEY setting), an HMAC signature; the returned manifest is the one written.

    The manifest's "eval_set" is the dataset's fixed evaluation set (corpus.releases.evalset), kept from
    the parent. `eval_scorer`, given the eval set's rows, returns the earlier models' scores on them
    ([{"model_version", "release", "accuracy", ...}]); they go into "eval_scores" and onto the card.
    """
    key = resolve_signing_key(signing_key)
    table = _validate_records(records, cfg.task or DEFAULT_TASK)
    detect = cfg.task == "detect"
    if detect:
        check_boxes_present(table)
    extra = dict(extra or {})
    versions = list_releases(root, dataset)
    parent = load_release(root, dataset, versions[-1], signing_key=key) if versions else None
    parent_all = pa.concat_tables([parent.train, parent.val, parent.test]) if parent else None
    strata = table
    if cfg.task == "multilabel":
        strata = table.set_column(table.schema.get_field_index("label"), "label", pa.array(stratum_keys(table)))
    splits_col = assign_splits(strata, cfg, _previous_splits(parent_all))
    table = table.set_column(table.schema.get_field_index("split"), "split", splits_col)
    table = table.sort_by("record_id")
    recipe = cfg.augmentation.model_dump()
    if (
        parent_all is not None
        and _content_key(table, detect) == _content_key(parent_all, detect)
        and parent.manifest.get("augmentation", recipe) == recipe
    ):
        return {**parent.manifest, "unchanged": True}

    # Past every folder and claim: a claim left by a builder that died must not block every later build.
    version = next_version(root.taken_names(dataset_folder(dataset)))
    parts = {s: table.filter(pc.equal(table.column("split"), s)) for s in SPLITS}
    manifest = _describe(dataset, version, parent, parent_all, table, parts, cfg)
    manifest["eval_set"] = _eval_set_of(table, parent, cfg, version)
    eval_rows = select_eval_rows(table, manifest["eval_set"])
    manifest["eval_scores"] = eval_scorer(eval_rows) if eval_scorer else []
    manifest["agreement"]["annotators"] = extra.get("agreement")
    manifest["extra"] = extra
    rel = posixpath.join(dataset_folder(dataset), version)
    manifest, blobs = _release_files(manifest, parts, cfg, key, root.uri(rel))
    try:
        root.publish_folder(rel, blobs, MANIFEST_FILE)
    except FileExistsError as exc:
        raise FileExistsError(f"release {dataset}/{version} already exists; releases are immutable") from exc
    return manifest

"""Tests for dataset releases: group-aware stable splits, versioning, integrity and the card."""

from __future__ import annotations

import io
import os
from collections import defaultdict

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from PIL import Image

from corpus.releases import (
    ReleaseConfig,
    ReleaseIntegrityError,
    assign_splits,
    build_release,
    list_releases,
    load_release,
)
from corpus.schema import RECORD_SCHEMA, conform, make_record_id
from corpus.store import DataRoot

LABELS = ["cat", "dog", "bird"]


def _png(rng: np.random.Generator) -> bytes:
    arr = rng.integers(0, 256, size=(12, 12, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def make_records(n: int, seed: int = 0, cluster_every: int = 5, prefix: str = "") -> pa.Table:
    """`n` labeled image records; every `cluster_every`-th row starts a planted cluster of 2-3 rows."""
    rng = np.random.default_rng(seed)
    rows = []
    cluster = None
    left_in_cluster = 0
    for i in range(n):
        image = _png(rng)
        label = LABELS[i % len(LABELS)] if left_in_cluster == 0 else rows[-1]["label"]
        if left_in_cluster == 0 and i % cluster_every == 0:
            cluster = f"{prefix}cl{i}"
            left_in_cluster = int(rng.integers(2, 4))
        rows.append(
            {
                "record_id": make_record_id(image),
                "kind": "image",
                "image": image,
                "near_dup_cluster": cluster if left_in_cluster > 0 else None,
                "label": label,
                "label_source": "human" if i % 4 else "consensus",
                "label_confidence": 1.0,
                "annotators": ["a1", "a2"],
            }
        )
        left_in_cluster = max(0, left_in_cluster - 1)
    return conform(pa.Table.from_pylist(rows))


def _all(release) -> pa.Table:
    return pa.concat_tables([release.train, release.val, release.test])


def test_clusters_never_straddle_splits_and_labels_are_stratified():
    records = make_records(300)
    clusters = records.column("near_dup_cluster").to_pylist()
    assert sum(c is not None for c in clusters) > 60  # the plant took
    splits = assign_splits(records, ReleaseConfig()).to_pylist()
    by_cluster = defaultdict(set)
    for c, s in zip(clusters, splits, strict=True):
        if c is not None:
            by_cluster[c].add(s)
    assert all(len(s) == 1 for s in by_cluster.values())
    labels = records.column("label").to_pylist()
    for lab in LABELS:
        got = [s for s, lab2 in zip(splits, labels, strict=True) if lab2 == lab]
        share = {s: got.count(s) / len(got) for s in ("train", "val", "test")}
        assert abs(share["train"] - 0.7) < 0.06, (lab, share)
        assert share["val"] > 0.08 and share["test"] > 0.08, (lab, share)
    # Deterministic, and the salt is what reshuffles.
    assert assign_splits(records, ReleaseConfig()).to_pylist() == splits
    assert assign_splits(records, ReleaseConfig(split_key="other")).to_pylist() != splits


def test_bad_config_and_bad_input_are_refused(tmp_path):
    with pytest.raises(ValueError, match="must be 1"):
        ReleaseConfig(train=0.8, val=0.15, test=0.15)
    records = make_records(10)
    unlabeled = records.set_column(records.schema.get_field_index("label"), "label", pa.nulls(10, pa.string()))
    root = DataRoot(str(tmp_path))
    with pytest.raises(ValueError, match="no label"):
        build_release(root, "ds", unlabeled, ReleaseConfig())
    with pytest.raises(ValueError, match="more than once"):
        build_release(root, "ds", pa.concat_tables([records, records]), ReleaseConfig())
    assert list_releases(root, "ds") == []


def test_release_versions_diff_and_stability(tmp_path):
    root = DataRoot(str(tmp_path))
    cfg = ReleaseConfig()
    v1_records = make_records(120, seed=1)
    m1 = build_release(root, "animals", v1_records, cfg, extra={"agreement": 0.91})
    assert m1["version"] == "v0001" and m1["parent"] is None
    assert sum(m1["rows"].values()) == 120
    assert m1["extra"] == {"agreement": 0.91}
    assert m1["label_sources"]["human"] > m1["label_sources"]["consensus"] > 0
    for split in ("train", "test"):
        assert set(m1["class_counts"][split]) == set(LABELS), split
    r1 = load_release(root, "animals")
    v1_split = dict(zip(_all(r1).column("record_id").to_pylist(), _all(r1).column("split").to_pylist(), strict=True))

    # Identical content: no new version.
    again = build_release(root, "animals", v1_records, cfg)
    assert again["unchanged"] is True and again["version"] == "v0001"
    assert list_releases(root, "animals") == ["v0001"]

    # v2: same records with 5 relabelled, 40 new rows, and one cluster grows into a new row.
    relabel_ids = v1_records.column("record_id").to_pylist()[:5]
    labels = v1_records.column("label").to_pylist()
    new_labels = [("dog" if lab != "dog" else "cat") if i < 5 else lab for i, lab in enumerate(labels)]
    changed = v1_records.set_column(v1_records.schema.get_field_index("label"), "label", pa.array(new_labels))
    grown_cluster = next(c for c in v1_records.column("near_dup_cluster").to_pylist() if c)
    extra_rows = make_records(40, seed=2, prefix="new-")
    cluster_col = extra_rows.column("near_dup_cluster").to_pylist()
    cluster_col[0] = grown_cluster
    extra_rows = extra_rows.set_column(
        extra_rows.schema.get_field_index("near_dup_cluster"), "near_dup_cluster", pa.array(cluster_col, pa.string())
    )
    m2 = build_release(root, "animals", pa.concat_tables([changed, extra_rows]), cfg)
    assert m2["version"] == "v0002" and m2["parent"] == "v0001"
    assert m2["diff"] == {"added": 40, "removed": 0, "relabelled": 5, "moved": 0}
    r2 = load_release(root, "animals", "latest")
    all2 = _all(r2)
    v2_split = dict(zip(all2.column("record_id").to_pylist(), all2.column("split").to_pylist(), strict=True))
    assert all(v2_split[rid] == s for rid, s in v1_split.items())
    # The new member of an old cluster joined its cluster's split.
    old_cluster_split = next(
        v1_split[rid]
        for rid, c in zip(
            v1_records.column("record_id").to_pylist(), v1_records.column("near_dup_cluster").to_pylist(), strict=True
        )
        if c == grown_cluster
    )
    assert v2_split[extra_rows.column("record_id")[0].as_py()] == old_cluster_split
    relabelled = all2.filter(pc.is_in(all2.column("record_id"), pa.array(relabel_ids)))
    assert relabelled.num_rows == 5
    assert list_releases(root, "animals") == ["v0001", "v0002"]
    assert load_release(root, "animals", "v0001").manifest["version"] == "v0001"
    assert load_release(root, "animals", 2).version == "v0002"


def test_release_files_are_readable_read_only_and_carded(tmp_path):
    root = DataRoot(str(tmp_path))
    build_release(root, "animals", make_records(60, seed=3), ReleaseConfig())
    folder = tmp_path / "releases" / "animals" / "v0001"
    assert sorted(p.name for p in folder.iterdir()) == [
        "card.html",
        "manifest.json",
        "test.parquet",
        "train.parquet",
        "val.parquet",
    ]
    assert not any(p.name.startswith(".tmp") for p in folder.parent.iterdir())
    for p in folder.iterdir():
        assert (p.stat().st_mode & 0o222) == 0, p.name
    df = pd.read_parquet(folder / "train.parquet")
    assert set(df["split"]) == {"train"}
    assert pa.Table.from_pandas(df, preserve_index=False).schema.names == RECORD_SCHEMA.names
    card = (folder / "card.html").read_text()
    for lab in LABELS:
        assert f"<h3>{lab}</h3>" in card
    assert "data:image/jpeg;base64," in card


def test_tampered_file_raises_integrity_error(tmp_path):
    root = DataRoot(str(tmp_path))
    build_release(root, "animals", make_records(60, seed=4), ReleaseConfig())
    path = tmp_path / "releases" / "animals" / "v0001" / "val.parquet"
    df = pd.read_parquet(path)
    df.loc[0, "label"] = "cat" if df.loc[0, "label"] != "cat" else "dog"
    os.chmod(path, 0o644)
    df.to_parquet(path, index=False)
    with pytest.raises(ReleaseIntegrityError, match=r"val\.parquet was modified"):
        load_release(root, "animals")
    os.remove(path)
    with pytest.raises(ReleaseIntegrityError, match=r"val\.parquet is listed in the manifest but missing"):
        load_release(root, "animals")


def test_missing_release_lists_versions(tmp_path):
    root = DataRoot(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no releases"):
        load_release(root, "animals")
    build_release(root, "animals", make_records(20, seed=5), ReleaseConfig())
    with pytest.raises(FileNotFoundError, match="versions: v0001"):
        load_release(root, "animals", "v0009")


def test_existing_version_is_never_overwritten(tmp_path, monkeypatch):
    root = DataRoot(str(tmp_path))
    build_release(root, "animals", make_records(20, seed=6), ReleaseConfig())
    before = (tmp_path / "releases" / "animals" / "v0001" / "manifest.json").read_bytes()
    # A concurrent writer that finished v0001 after this build listed the versions (a race we cannot
    # time for real): the build then aims at v0001 and must refuse rather than overwrite it.
    import corpus.releases as releases

    monkeypatch.setattr(releases, "list_releases", lambda root, dataset: [])
    with pytest.raises(FileExistsError, match="already exists"):
        build_release(root, "animals", make_records(30, seed=7), ReleaseConfig())
    monkeypatch.undo()
    assert (tmp_path / "releases" / "animals" / "v0001" / "manifest.json").read_bytes() == before
    assert not any(p.name.startswith(".tmp") for p in (tmp_path / "releases" / "animals").iterdir())


def test_corrupt_parent_stops_the_next_build(tmp_path):
    root = DataRoot(str(tmp_path))
    build_release(root, "animals", make_records(20, seed=8), ReleaseConfig())
    path = tmp_path / "releases" / "animals" / "v0001" / "train.parquet"
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ReleaseIntegrityError, match=r"train\.parquet was modified"):
        build_release(root, "animals", make_records(30, seed=9), ReleaseConfig())
    assert list_releases(root, "animals") == ["v0001"]

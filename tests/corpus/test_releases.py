"""Tests for dataset releases: group-aware stable splits, versioning, integrity and the card."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from collections import defaultdict

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from PIL import Image

from corpus.releases.build import build_release
from corpus.releases.config import ReleaseConfig
from corpus.releases.recipes import AugmentationRecipe
from corpus.releases.splits import assign_splits, find_split_leaks, group_records
from corpus.releases.summaries import compute_diff
from corpus.releases.versions import (
    ReleaseIntegrityError,
    list_releases,
    load_release,
    next_version,
    normalise_version,
    parse_release_ref,
)
from corpus.schema import RECORD_SCHEMA, conform, make_record_id
from corpus.store import DataRoot

LABELS = ["cat", "dog", "bird"]


def _png(rng: np.random.Generator) -> bytes:
    arr = rng.integers(0, 256, size=(12, 12, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def make_records(n: int, seed: int = 0, cluster_every: int = 5, prefix: str = "", page_every: int = 0) -> pa.Table:
    """`n` labeled image records; every `cluster_every`-th row starts a planted cluster of 2-3 rows; with
    `page_every`, rows i and i+1 (i % page_every == 0) share a source page."""
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
                "page_url": f"https://site/{prefix}p{i - i % 2}" if page_every and i % page_every < 2 else None,
                "label": label,
                "label_source": "human" if i % 4 else "consensus",
                "label_confidence": 1.0,
                "annotators": ["a1", "a2"],
            }
        )
        left_in_cluster = max(0, left_in_cluster - 1)
    return conform(pa.Table.from_pylist(rows))


def _set(table: pa.Table, name: str, values: list) -> pa.Table:
    """`table` with column `name` replaced by `values` (typed as the record schema says)."""
    typ = RECORD_SCHEMA.field(name).type
    return table.set_column(table.schema.get_field_index(name), name, pa.array(values, typ))


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
    # Deterministic, order-independent, and the salt is what reshuffles.
    shuffled = records.take(pa.array(np.random.default_rng(1).permutation(records.num_rows)))
    shuffled_splits = assign_splits(shuffled, ReleaseConfig()).to_pylist()
    by_id = dict(zip(shuffled.column("record_id").to_pylist(), shuffled_splits, strict=True))
    assert [by_id[r] for r in records.column("record_id").to_pylist()] == splits
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


def test_pages_and_clusters_are_grouped_transitively():
    # Planted: a and b share page P; b and c share near-dup cluster K; d is alone on page P2 (its own group).
    records = conform(
        pa.table(
            {
                "record_id": ["a", "b", "c", "d", "e"],
                "kind": ["image"] * 5,
                "page_url": ["P", "P", "Q", "P2", None],
                "near_dup_cluster": [None, "K", "K", None, None],
                "label": ["cat"] * 5,
            }
        )
    )
    groups = group_records(records)
    assert groups[0] == groups[1] == groups[2] == "g:a"
    assert len(set(groups)) == 3
    loose = group_records(records, by_page=False)
    assert loose[0] != loose[1] == loose[2]


def test_shared_pages_never_straddle_splits():
    records = make_records(300, seed=21, page_every=3)
    pages = records.column("page_url").to_pylist()
    assert sum(p is not None for p in pages) > 150  # the plant took
    splits = assign_splits(records, ReleaseConfig())
    assert find_split_leaks(records, splits) == []
    by_page = defaultdict(set)
    for p, s in zip(pages, splits.to_pylist(), strict=True):
        if p is not None:
            by_page[p].add(s)
    assert all(len(s) == 1 for s in by_page.values())
    # Without page grouping the same plant does straddle: the check has teeth.
    loose = assign_splits(records, ReleaseConfig(group_by_page=False))
    assert find_split_leaks(records, loose)


def test_release_versions_diff_and_stability(tmp_path):
    root = DataRoot(str(tmp_path))
    cfg = ReleaseConfig()
    v1_records = make_records(120, seed=1, page_every=4)
    m1 = build_release(root, "animals", v1_records, cfg, extra={"agreement": 0.91})
    assert m1["version"] == "v0001" and m1["parent"] is None
    assert sum(m1["rows"].values()) == 120
    assert m1["extra"] == {"agreement": 0.91}
    assert m1["label_sources"]["human"] > m1["label_sources"]["consensus"] > 0
    assert m1["diff"]["added"] == 120 and sum(v["added"] for v in m1["diff"]["by_label"].values()) == 120
    for split in ("train", "test"):
        assert set(m1["class_counts"][split]) == set(LABELS), split
    r1 = load_release(root, "animals")
    v1_split = dict(zip(_all(r1).column("record_id").to_pylist(), _all(r1).column("split").to_pylist(), strict=True))

    # Identical content: no new version.
    again = build_release(root, "animals", v1_records, cfg)
    assert again["unchanged"] is True and again["version"] == "v0001"
    assert list_releases(root, "animals") == ["v0001"]

    # v2: 5 relabelled, 2 removed, 40 new rows; one cluster grows into a new row, one page gains an image.
    ids = v1_records.column("record_id").to_pylist()
    relabel_ids = ids[:5]
    labels = v1_records.column("label").to_pylist()
    new_labels = [("dog" if lab != "dog" else "cat") if i < 5 else lab for i, lab in enumerate(labels)]
    changed = v1_records.set_column(v1_records.schema.get_field_index("label"), "label", pa.array(new_labels))
    changed = changed.slice(0, changed.num_rows - 2)
    grown_cluster = next(c for c in v1_records.column("near_dup_cluster").to_pylist() if c)
    shared_page = next(p for p in v1_records.column("page_url").to_pylist() if p)
    extra_rows = make_records(40, seed=2, prefix="new-")
    cluster_col = extra_rows.column("near_dup_cluster").to_pylist()
    cluster_col[0] = grown_cluster
    page_col = extra_rows.column("page_url").to_pylist()
    page_col[1] = shared_page
    extra_rows = extra_rows.set_column(
        extra_rows.schema.get_field_index("near_dup_cluster"), "near_dup_cluster", pa.array(cluster_col, pa.string())
    ).set_column(extra_rows.schema.get_field_index("page_url"), "page_url", pa.array(page_col, pa.string()))
    m2 = build_release(root, "animals", pa.concat_tables([changed, extra_rows]), cfg)
    assert m2["version"] == "v0002" and m2["parent"] == "v0001"
    diff = m2["diff"]
    assert {k: diff[k] for k in ("added", "removed", "relabelled", "moved")} == {
        "added": 40,
        "removed": 2,
        "relabelled": 5,
        "moved": 0,
    }
    expected_pairs = defaultdict(int)
    for old, new in zip(labels[:5], new_labels[:5], strict=True):
        expected_pairs[f"{old} -> {new}"] += 1
    assert diff["relabel_pairs"] == dict(expected_pairs)
    assert sum(v.get("relabelled_in", 0) for v in diff["by_label"].values()) == 5
    assert sum(v.get("removed", 0) for v in diff["by_label"].values()) == 2
    assert m2["split_leaks"]["groups"] == 0
    r2 = load_release(root, "animals", "latest")
    all2 = _all(r2)
    v2_split = dict(zip(all2.column("record_id").to_pylist(), all2.column("split").to_pylist(), strict=True))
    assert all(v2_split[rid] == s for rid, s in v1_split.items() if rid in v2_split)
    # The new member of an old cluster, and the new image of an old page, joined their group's split.
    v1_rows = v1_records.to_pylist()
    cluster_split = next(v1_split[r["record_id"]] for r in v1_rows if r["near_dup_cluster"] == grown_cluster)
    page_split = next(v1_split[r["record_id"]] for r in v1_rows if r["page_url"] == shared_page)
    new_ids = extra_rows.column("record_id").to_pylist()
    assert v2_split[new_ids[0]] == cluster_split
    assert v2_split[new_ids[1]] == page_split
    relabelled = all2.filter(pc.is_in(all2.column("record_id"), pa.array(relabel_ids)))
    assert relabelled.num_rows == 5
    assert list_releases(root, "animals") == ["v0001", "v0002"]
    assert load_release(root, "animals", "v0001").manifest["version"] == "v0001"
    assert load_release(root, "animals", 2).version == "v0002"


def test_a_bridging_record_never_moves_released_items_and_is_reported(tmp_path):
    root = DataRoot(str(tmp_path))
    v1 = make_records(90, seed=31)
    build_release(root, "animals", v1, ReleaseConfig())
    r1 = load_release(root, "animals")
    rows = _all(r1).to_pylist()
    # Plant: a new image on the page of a train record that is a near-duplicate of a test record.
    train_row = next(r for r in rows if r["split"] == "train")
    test_row = next(r for r in rows if r["split"] == "test")
    test_cluster = test_row["near_dup_cluster"] or "bridge-cluster"
    v1_ids = v1.column("record_id").to_pylist()
    v1_pages = _set(v1, "page_url", ["https://site/bridge" if r == train_row["record_id"] else None for r in v1_ids])
    clusters = v1.column("near_dup_cluster").to_pylist()
    clusters = [test_cluster if r == test_row["record_id"] else c for r, c in zip(v1_ids, clusters, strict=True)]
    v1_pages = _set(v1_pages, "near_dup_cluster", clusters)
    bridge = make_records(1, seed=32, prefix="bridge-")
    bridge = _set(_set(bridge, "page_url", ["https://site/bridge"]), "near_dup_cluster", [test_cluster])
    m2 = build_release(root, "animals", pa.concat_tables([v1_pages, bridge]), ReleaseConfig())
    assert m2["diff"]["moved"] == 0
    assert m2["split_leaks"]["groups"] == 1
    leak = m2["split_leaks"]["examples"][0]
    assert {"train", "test"} <= set(leak["splits"]) and "never move" in leak["reason"]


def test_release_files_are_readable_read_only_checksummed_and_carded(tmp_path):
    polars = pytest.importorskip("polars")
    duckdb = pytest.importorskip("duckdb")
    root = DataRoot(str(tmp_path))
    records = make_records(60, seed=3)
    pii = [[("email", 2), ("phone", 0)] if i % 10 == 0 else None for i in range(60)]
    records = _set(records, "pii_counts", pii)
    manifest = build_release(root, "animals", records, ReleaseConfig())
    folder = tmp_path / "releases" / "animals" / "v0001"
    assert sorted(p.name for p in folder.iterdir()) == [
        "SHA256SUMS",
        "card.html",
        "manifest.json",
        "test.parquet",
        "train.parquet",
        "val.parquet",
    ]
    assert not any(p.name.startswith(".tmp") for p in folder.parent.iterdir())
    for p in folder.iterdir():
        assert (p.stat().st_mode & 0o222) == 0, p.name
    # The split files open directly in pandas, polars and DuckDB, with the same rows and labels.
    n_train = manifest["rows"]["train"]
    df = pd.read_parquet(folder / "train.parquet")
    assert set(df["split"]) == {"train"} and len(df) == n_train
    assert list(df.columns) == RECORD_SCHEMA.names
    pl_df = polars.read_parquet(folder / "train.parquet")
    assert pl_df.height == n_train and sorted(pl_df["label"].to_list()) == sorted(df["label"])
    con = duckdb.connect()
    counts = dict(
        con.execute(f"SELECT label, count(*) FROM read_parquet('{folder}/*.parquet') GROUP BY label").fetchall()
    )
    assert counts == dict(pd.Series(records.column("label").to_pylist()).value_counts())
    # `sha256sum -c SHA256SUMS` format, and it agrees with the files.
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ")
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    assert manifest["release_id"].startswith("sha256:")
    assert manifest["curation"]["pii_entities"] == {"email": 12}
    assert manifest["curation"]["rows_with_pii_found"] == 6
    card = (folder / "card.html").read_text()
    for lab in LABELS:
        assert f"<h3>{lab}</h3>" in card
    assert "data:image/jpeg;base64," in card
    for section in ("class balance per split", "label confidence histogram", "changes since parent per label"):
        assert f'aria-label="{section}"' in card, section
    assert "<svg" in card and "http://" not in card.replace("http://www.w3.org/2000/svg", "")
    assert "email" in card and manifest["release_id"] in card


def test_label_sources_agreement_and_confidence_are_summarised(tmp_path):
    root = DataRoot(str(tmp_path))
    records = make_records(40, seed=41)
    # Planted: 10 consensus rows, 4 of them with a split vote (2 of 3 annotators agree); 5 model labels.
    sources = ["consensus"] * 10 + ["model"] * 5 + ["human"] * 25
    conf = [2 / 3] * 4 + [1.0] * 6 + [0.55] * 5 + [1.0] * 25
    annotators = [["a", "b", "c"]] * 10 + [[]] * 5 + [["a"]] * 25
    for name, values, typ in (
        ("label_source", sources, pa.string()),
        ("label_confidence", conf, pa.float32()),
        ("annotators", annotators, pa.list_(pa.string())),
    ):
        records = records.set_column(records.schema.get_field_index(name), name, pa.array(values, typ))
    agreement = {"items_with_overlap": 10, "percent_agreement": 0.8, "cohen_kappa": 0.7, "fleiss_kappa": 0.7}
    m = build_release(root, "animals", records, ReleaseConfig(), extra={"agreement": agreement})
    assert m["label_sources"] == {"consensus": 10, "human": 25, "model": 5}
    assert m["label_source_share"]["model"] == pytest.approx(5 / 40)
    assert m["agreement"]["multi_annotated"] == 10
    assert m["agreement"]["unanimous_share"] == pytest.approx(0.6)
    assert m["agreement"]["annotators"] == agreement
    hist = m["confidence_histogram"]["counts"]
    assert sum(hist) == 40 and hist[5] == 5 and hist[6] == 4 and hist[9] == 31


def test_recipe_is_recorded_and_a_recipe_change_is_a_new_release(tmp_path):
    root = DataRoot(str(tmp_path))
    records = make_records(30, seed=51)
    m1 = build_release(root, "animals", records, ReleaseConfig())
    assert m1["augmentation"]["name"] == "train-basic"
    classes = [t["__class_fullname__"] for t in m1["augmentation"]["transforms"]]
    assert classes[0] == "RandomResizedCrop" and classes[-1] == "Normalize"
    assert load_release(root, "animals").augmentation.name == "train-basic"
    light = ReleaseConfig(augmentation=AugmentationRecipe(name="train-light"))
    m2 = build_release(root, "animals", records, light)
    assert m2["version"] == "v0002" and m2["augmentation"]["name"] == "train-light"
    assert {k: m2["diff"][k] for k in ("added", "removed", "relabelled", "moved")} == dict.fromkeys(
        ("added", "removed", "relabelled", "moved"), 0
    )
    assert m2["release_id"] == m1["release_id"]  # same data, same content address
    custom = AugmentationRecipe(name="mine", transforms=[{"__class_fullname__": "HorizontalFlip", "p": 1.0}])
    assert custom.eval_transforms[0]["__class_fullname__"] == "Resize"
    with pytest.raises(ValueError, match="unknown recipe 'fancy'"):
        AugmentationRecipe(name="fancy")
    with pytest.raises(ValueError, match="__class_fullname__"):
        AugmentationRecipe(name="bad", transforms=[{"p": 1.0}])


def test_parse_release_ref():
    assert parse_release_ref("demo@v0002") == ("demo", "v0002")
    assert parse_release_ref("demo@3") == ("demo", "v0003")
    assert parse_release_ref("demo") == ("demo", "latest")
    assert parse_release_ref("demo@latest") == ("demo", "latest")
    with pytest.raises(ValueError, match="DATASET@VERSION"):
        parse_release_ref("@v1")


def _writable(path) -> None:
    os.chmod(path, 0o644)


def test_tampered_file_raises_integrity_error(tmp_path):
    root = DataRoot(str(tmp_path))
    build_release(root, "animals", make_records(60, seed=4), ReleaseConfig())
    folder = tmp_path / "releases" / "animals" / "v0001"
    path = folder / "val.parquet"
    original = path.read_bytes()
    df = pd.read_parquet(path)
    df.loc[0, "label"] = "cat" if df.loc[0, "label"] != "cat" else "dog"
    _writable(path)
    df.to_parquet(path, index=False)
    with pytest.raises(ReleaseIntegrityError, match=r"val\.parquet was modified"):
        load_release(root, "animals")
    os.remove(path)
    with pytest.raises(ReleaseIntegrityError, match=r"val\.parquet is listed in the manifest but missing"):
        load_release(root, "animals")
    path.write_bytes(original)
    load_release(root, "animals")  # restored: loads again
    # A stray file dropped into the folder.
    (folder / "notes.txt").write_text("hi")
    with pytest.raises(ReleaseIntegrityError, match=r"does not list: \['notes.txt'\]"):
        load_release(root, "animals")
    os.remove(folder / "notes.txt")
    # The manifest edited to "bless" a changed file: its release_id no longer matches.
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["val.parquet"]["sha256"] = "0" * 64
    _writable(manifest_path)
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ReleaseIntegrityError, match=r"manifest\.json was edited"):
        load_release(root, "animals")


def test_copied_release_folder_is_refused(tmp_path):
    root = DataRoot(str(tmp_path))
    build_release(root, "animals", make_records(20, seed=10), ReleaseConfig())
    base = tmp_path / "releases" / "animals"
    shutil.copytree(base / "v0001", base / "v0002")
    with pytest.raises(ReleaseIntegrityError, match="names animals/v0001, not animals/v0002"):
        load_release(root, "animals", "latest")


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
    import corpus.releases.build as build

    monkeypatch.setattr(build, "list_releases", lambda root, dataset: [])
    monkeypatch.setattr(root, "taken_names", lambda relpath: [])
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


def test_compute_diff_counts_added_removed_relabelled_and_moved():
    parent = pa.table({"record_id": ["a", "b", "c"], "label": ["cat", "dog", "cat"], "split": ["train", "val", "test"]})
    new = pa.table({"record_id": ["a", "b", "d"], "label": ["dog", "dog", "bird"], "split": ["train", "test", "val"]})
    diff = compute_diff(new, parent)
    assert {k: diff[k] for k in ("added", "removed", "relabelled", "moved")} == {
        "added": 1,
        "removed": 1,
        "relabelled": 1,
        "moved": 1,
    }
    assert diff["relabel_pairs"] == {"cat -> dog": 1}
    assert diff["by_label"] == {
        "bird": {"added": 1},
        "cat": {"relabelled_out": 1, "removed": 1},
        "dog": {"relabelled_in": 1},
    }
    first = compute_diff(new, None)
    assert first["added"] == 3 and first["by_label"] == {"bird": {"added": 1}, "dog": {"added": 2}}


def test_version_names():
    assert next_version([]) == "v0001" and next_version(["v0001", "v0009"]) == "v0010"
    assert next_version(["v9999"]) == "v10000"
    assert normalise_version(3) == "v0003" and normalise_version("v0002") == "v0002"


def test_a_claim_left_by_a_dead_builder_on_object_storage_is_skipped():
    import uuid

    root = DataRoot(f"memory://releases-{uuid.uuid4().hex}")
    # Planted: a builder claimed v0001 on the object store and died before writing anything.
    root.write_bytes("releases/animals/.claims/v0001", b"token-of-a-dead-builder")
    with pytest.raises(FileExistsError, match="claimed by another publisher"):
        root.publish_folder("releases/animals/v0001", {"manifest.json": b"{}"}, "manifest.json")
    assert root.taken_names("releases/animals") == ["v0001"] and list_releases(root, "animals") == []
    manifest = build_release(root, "animals", make_records(20, seed=80), ReleaseConfig(), signing_key="")
    assert manifest["version"] == "v0002" and manifest["parent"] is None
    assert list_releases(root, "animals") == ["v0002"]
    assert root.taken_names("releases/animals") == ["v0001", "v0002"]
    assert load_release(root, "animals", signing_key="").manifest == manifest

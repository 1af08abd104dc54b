"""A team's own label sets through the import flow into a multilabel release, and back: Flywheel's multilabel
csv and hf exports re-imported give the same sets; a release of the other task kind is refused in one line."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from corpus.releases.config import ReleaseConfig
from corpus.releases.versions import load_release
from corpus.schema import make_record_id
from corpus.store import DataRoot
from crawlers.importers.config import ImportConfig
from crawlers.importers.importer import import_to_root
from labeling.sync import read_annotations
from pipelines.config import ImportParams, ReleaseParams
from pipelines.imports import import_flow
from pipelines.release import release_flow
from tests.crawlers.import_files import write_jpeg

pytestmark = [pytest.mark.prefect, pytest.mark.timeout(300)]

SETS = [["cat", "dog"], ["dog"], [], ["cat"], ["fox", "cat"], ["dog", "fox"], [], ["fox"], ["cat", "dog", "fox"]]


def _write_manifest(folder) -> dict[str, list[str]]:
    """A CSV of 9 images and their `;`-joined sets (two empty: quoted ""); record_id -> its sorted set."""
    lines, truth = ["file,labels"], {}
    for i, chosen in enumerate(SETS):
        data = write_jpeg(folder / f"{i}.jpg", seed=300 + i).read_bytes()
        lines.append(f'{i}.jpg,"{";".join(chosen)}"')
        truth[make_record_id(data)] = sorted(chosen)
    (folder / "tags.csv").write_text("\n".join(lines) + "\n")
    return truth


def _released_sets(root: DataRoot, dataset: str) -> dict[str, tuple[list[str], str]]:
    """record_id -> (its released set, its label_source)."""
    release = load_release(root, dataset)
    out = {}
    for split in ("train", "val", "test"):
        for row in release.split(split).select(["record_id", "labels", "label_source"]).to_pylist():
            out[row["record_id"]] = (sorted(row["labels"]), row["label_source"])
    return out


def _reimported(tmp_path, source, name: str, kind: str) -> dict[str, list[str]]:
    """The sets a fresh data root imports from an export, by the released record_id the export carries (a
    column of both formats; the metadata side file keeps it)."""
    root = DataRoot(str(tmp_path / name))
    cfg = ImportConfig(source=str(source), kind=kind, label_policy="trusted", name=name)
    report = import_to_root(root, cfg, import_run=f"import-{name}", work_dir=tmp_path / "work")
    assert report["label_sets"] == report["records"]  # every image came with its set
    meta = pq.read_table(tmp_path / name / "imports" / name / "metadata").to_pylist()
    released_id = {r["record_id"]: json.loads(r["metadata"])["record_id"] for r in meta}
    rows = read_annotations(root).select(["record_id", "labels"]).to_pylist()
    return {released_id[r["record_id"]]: sorted(r["labels"]) for r in rows}


def test_trusted_label_sets_make_a_multilabel_release_whose_exports_round_trip(prefect_api, tmp_path):
    truth = _write_manifest(tmp_path / "team")
    root = DataRoot(str(tmp_path / "data"))
    config = ImportConfig(source=str(tmp_path / "team" / "tags.csv"), label_policy="trusted", name="team")
    report = import_flow(ImportParams(source=config, data_root=root.url))
    assert (report["import"]["label_sets"], report["pool"] is not None) == (len(SETS), True)

    with pytest.raises(ValueError, match="dataset tags: a classify release cannot take the label sets") as refused:
        release_flow(ReleaseParams(dataset="tags", release=ReleaseConfig(task="classify"), data_root=root.url))
    assert "\n" not in str(refused.value) and "imported:team" in str(refused.value)

    manifest = release_flow(
        ReleaseParams(
            dataset="tags", release=ReleaseConfig(task="multilabel"), exports=["csv", "hf"], data_root=root.url
        )
    )
    assert manifest["task"] == "multilabel" and manifest["extra"]["trusted_origins"] == ["imported:team"]
    released = _released_sets(root, "tags")
    assert {rid: labels for rid, (labels, _) in released.items()} == truth
    assert {source for _, source in released.values()} == {"imported:team"}

    export = tmp_path / "data" / "exports" / "tags" / manifest["version"]
    # one manifest a split (a split of 9 records may be empty: a header only), the images/ folder beside them
    csv_parts = [p for p in sorted((export / "csv").glob("*.csv")) if len(p.read_text().splitlines()) > 1]
    csv_sets: dict[str, list[str]] = {}
    for part in csv_parts:
        csv_sets.update(_reimported(tmp_path, part, f"csv-{part.stem}", "manifest"))
    assert csv_sets == truth
    assert _reimported(tmp_path, export / "hf", "hf", "hf") == truth


def test_a_single_label_trusted_import_is_refused_by_a_multilabel_release(prefect_api, tmp_path):
    folder = tmp_path / "team"
    lines = ["file,label"] + [f"{i}.jpg,{'cat' if i % 2 else 'dog'}" for i in range(4)]
    for i in range(4):
        write_jpeg(folder / f"{i}.jpg", seed=400 + i)
    (folder / "one.csv").write_text("\n".join(lines) + "\n")
    root = DataRoot(str(tmp_path / "data"))
    config = ImportConfig(source=str(folder / "one.csv"), label_policy="trusted", name="team")
    import_flow(ImportParams(source=config, data_root=root.url))
    with pytest.raises(ValueError, match="dataset pets: a multilabel release cannot take the single labels"):
        release_flow(ReleaseParams(dataset="pets", release=ReleaseConfig(task="multilabel"), data_root=root.url))

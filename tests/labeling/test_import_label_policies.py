"""Imported labels by their policy: trusted ones taken as they are, preannotate ones shown to confirm."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from corpus.schema import ANNOTATION_SCHEMA
from corpus.store import DataRoot
from crawlers.importers.labels import annotation_rows, origins_with_policy, prediction_rows
from labeling.preannotations import (
    merge_preannotations,
    preannotation_version,
    read_imported_predictions,
)
from labeling.quality import aggregate_majority
from labeling.rounds import attach_labels
from labeling.studio_tasks import build_tasks

AT = datetime(2026, 1, 1, tzinfo=UTC)


def _records(ids: list[str]) -> pa.Table:
    n = len(ids)
    return pa.table(
        {
            "record_id": ids,
            "label": pa.nulls(n, pa.string()),
            "label_source": pa.nulls(n, pa.string()),
            "label_confidence": pa.nulls(n, pa.float32()),
            "annotators": pa.nulls(n, pa.list_(pa.string())),
        }
    )


def _human(votes: list[tuple[str, str, str]]) -> pa.Table:
    rows = [
        {
            "annotation_id": i + 1,
            "task_id": i + 1,
            "project_id": 1,
            "record_id": rid,
            "label": label,
            "annotator": who,
            "created_at": AT,
            "updated_at": AT,
            "lead_time": 1.0,
            "was_cancelled": False,
            "deleted": False,
            "pulled_at": AT,
        }
        for i, (rid, label, who) in enumerate(votes)
    ]
    return pa.Table.from_pylist(rows, schema=ANNOTATION_SCHEMA)


def test_a_trusted_origin_s_label_wins_with_its_origin_and_full_confidence():
    imported = annotation_rows([("a", "cat"), ("b", "dog")], "imported:partner", AT)
    people = _human([("a", "dog", "1"), ("a", "dog", "2"), ("c", "cat", "1")])
    annotations = pa.concat_tables([imported, people])
    aggregated = aggregate_majority(annotations)
    labeled = attach_labels(
        _records(["a", "b", "c", "d"]), aggregated, annotations=annotations, trusted_origins=["imported:partner"]
    )
    got = {r["record_id"]: r for r in labeled.to_pylist()}
    assert set(got) == {"a", "b", "c"}
    assert (got["a"]["label"], got["a"]["label_source"], got["a"]["label_confidence"]) == ("cat", "imported:partner", 1)
    assert sorted(got["a"]["annotators"]) == ["1", "2", "imported:partner"]
    assert (got["b"]["label"], got["b"]["label_source"]) == ("dog", "imported:partner")
    assert got["c"]["label_source"] == "human"
    # Not trusted: the imported label is one more vote (here outvoted by two people).
    plain = {r["record_id"]: r for r in attach_labels(_records(["a", "b"]), aggregated).to_pylist()}
    assert (plain["a"]["label"], plain["a"]["label_source"]) == ("dog", "consensus")
    assert plain["b"]["label_source"] == "human"


def test_trusted_origins_need_the_annotations():
    with pytest.raises(ValueError, match="annotations"):
        attach_labels(_records(["a"]), aggregate_majority(_human([("a", "x", "1")])), trusted_origins=["imported:p"])


def _report(root: DataRoot, run: str, origin: str, policy: str, finished: str) -> None:
    report = {"label_origin": origin, "label_policy": policy, "finished_at": finished, "source": origin[9:]}
    root.write_json(f"raw/{run}/_report.json", report)


def test_origins_with_policy_reads_the_import_reports_and_the_newest_import_decides(tmp_path):
    root = DataRoot(str(tmp_path))
    _report(root, "import-1", "imported:a", "trusted", "2026-01-01T00:00:00")
    _report(root, "import-2", "imported:b", "preannotate", "2026-01-01T00:00:00")
    _report(root, "import-3", "imported:c", "trusted", "2026-01-01T00:00:00")
    _report(root, "import-4", "imported:c", "annotator", "2026-02-01T00:00:00")  # re-imported: no longer trusted
    root.write_json("raw/crawl-1/_report.json", {"pages": 3, "images": 4})  # a crawl: no policy
    assert origins_with_policy(root, "trusted") == ["imported:a"]
    assert origins_with_policy(root, "preannotate") == ["imported:b"]
    assert origins_with_policy(DataRoot(str(tmp_path / "empty")), "trusted") == []


def _predictions(pairs: list[tuple[str, str]], confidence: float = 0.6) -> pa.Table:
    table = prediction_rows(pairs)
    return table.set_column(2, "confidence", pa.array([confidence] * len(pairs), pa.float32()))


def test_imported_labels_pre_annotate_only_records_the_model_did_not_score(tmp_path):
    root = DataRoot(str(tmp_path))
    first = prediction_rows([("a", "cat"), ("b", "dog")])
    root.write_table("imports/partner/labels/import-1-part-00000.parquet", first)
    root.write_table("imports/partner/labels/import-2-part-00000.parquet", prediction_rows([("b", "cat")]))
    root.write_table("imports/other/labels/import-3-part-00000.parquet", prediction_rows([("c", "bird"), ("d", "x")]))
    imported = read_imported_predictions(root, ["imported:partner", "imported:other"], ["a", "b", "c", "d", "z"])
    by_id = {r["record_id"]: (r["predicted_label"], r["model_version"]) for r in imported.to_pylist()}
    assert by_id == {
        "a": ("cat", "imported:partner"),
        "b": ("cat", "imported:partner"),  # the newest import of the source wins
        "c": ("bird", "imported:other"),
        "d": ("x", "imported:other"),
    }
    assert read_imported_predictions(root, [], ["a"]) is None
    with pytest.raises(ValueError, match="import origin"):
        read_imported_predictions(root, ["partner"])

    model = _predictions([("a", "dog")])
    merged = merge_preannotations(model, "demo-v0001-m1", imported, labels=["bird", "cat", "dog"])
    rows = {r["record_id"]: r for r in merged.to_pylist()}
    assert set(rows) == {"a", "b", "c"}  # d's label is not in the round's label set
    assert (rows["a"]["predicted_label"], rows["a"]["model_version"]) == ("dog", "demo-v0001-m1")
    assert (rows["b"]["predicted_label"], rows["b"]["model_version"]) == ("cat", "imported:partner")
    assert rows["b"]["confidence"] == 1.0
    assert preannotation_version(merged, "demo-v0001-m1") == "demo-v0001-m1"

    cold = merge_preannotations(None, None, imported, labels=["bird", "cat", "dog"])
    assert preannotation_version(cold, None) == "imported:partner"  # the origin behind most of them
    assert merge_preannotations(None, None, None) is None
    with pytest.raises(ValueError, match="model_version"):
        merge_preannotations(model, None, None)

    tasks = build_tasks(
        pa.table({"record_id": ["a", "b", "c"]}),
        {"a": "media/a.png", "b": "media/b.png", "c": "media/c.png"},
        predictions=merged,
        labels=["bird", "cat", "dog"],
        model_version=None,
    )
    versions = {t["data"]["record_id"]: t["predictions"][0]["model_version"] for t in tasks}
    assert versions == {"a": "demo-v0001-m1", "b": "imported:partner", "c": "imported:other"}
    choice = {t["data"]["record_id"]: t["predictions"][0]["result"][0]["value"]["choices"] for t in tasks}
    assert choice == {"a": ["dog"], "b": ["cat"], "c": ["bird"]}

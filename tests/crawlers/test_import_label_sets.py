"""Imported label sets: CSV `;`-joined (the empty set included), JSONL lists, Hugging Face Sequence(ClassLabel)
and multi-choice Label Studio exports become imported annotations with `labels`; hostile sets stop the import
in one line naming the file and the row, with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from corpus.schema import make_record_id
from corpus.store import DataRoot
from crawlers.importers.config import ImportConfig
from crawlers.importers.importer import import_to_root
from crawlers.importers.items import ImportSourceError
from crawlers.importers.label_sets import MAX_SET_SIZE, LabelSetError, parse_label_set
from labeling.sync import read_annotations
from pipelines.cli_import import import_command
from tests.crawlers.import_files import jpeg_bytes, write_jpeg

pytestmark = pytest.mark.timeout(120)


def imported(tmp_path: Path, source: Path, run: str = "import-1", **options) -> dict:
    cfg = ImportConfig(source=str(source), label_policy="trusted", **options)
    return import_to_root(DataRoot(str(tmp_path / "data")), cfg, import_run=run, work_dir=tmp_path / "work")


def imported_sets(tmp_path: Path) -> dict[str, list[str] | None]:
    """record_id -> the label set of its newest imported annotation."""
    table = read_annotations(DataRoot(str(tmp_path / "data"))).sort_by("updated_at")
    rows = table.select(["record_id", "label", "labels"]).to_pylist()
    assert all(r["label"] is None for r in rows)  # a set's row carries no single label
    return {r["record_id"]: r["labels"] for r in rows}


def images(folder: Path, n: int) -> dict[str, str]:
    """name -> record_id of n distinct JPEGs written to `folder`."""
    return {f"{i}.jpg": make_record_id(write_jpeg(folder / f"{i}.jpg", seed=40 + i).read_bytes()) for i in range(n)}


def test_csv_sets_joined_by_semicolons_keep_the_empty_set_apart_from_a_missing_answer(tmp_path):
    ids = images(tmp_path / "m", 4)
    # row 3 is a quoted "": the empty set ("none of these"); row 4 unquoted empty: no answer
    (tmp_path / "m" / "sets.csv").write_text(
        'path,labels,note\n0.jpg,cat;dog,a\n1.jpg," dog ",b\n2.jpg,"",c\n3.jpg,,d\n'
    )
    report = imported(tmp_path, tmp_path / "m" / "sets.csv")
    assert (report["records"], report["labels"], report["label_sets"]) == (4, 3, 3)
    assert imported_sets(tmp_path) == {ids["0.jpg"]: ["cat", "dog"], ids["1.jpg"]: ["dog"], ids["2.jpg"]: []}
    meta = pq.read_table(tmp_path / "data" / "imports" / "sets" / "metadata").to_pylist()
    assert sorted(json.loads(r["metadata"])["note"] for r in meta) == ["a", "b", "c", "d"]  # labels: not metadata


def test_jsonl_lists_and_a_re_import_writes_a_new_version_only_for_an_edited_set(tmp_path):
    ids = images(tmp_path / "m", 3)
    path = tmp_path / "m" / "sets.jsonl"
    rows = [{"path": "0.jpg", "labels": ["sky", "sea"]}, {"path": "1.jpg", "labels": []}, {"path": "2.jpg"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    first = imported(tmp_path, path)
    assert (first["records"], first["label_sets"]) == (3, 2)
    assert imported_sets(tmp_path) == {ids["0.jpg"]: ["sea", "sky"], ids["1.jpg"]: []}

    again = imported(tmp_path, path, "import-2")
    assert (again["records"], again["labels_changed"], again["output"]) == (0, 0, None)
    parts = sorted(p.name for p in (tmp_path / "data" / "annotations").iterdir())

    rows[0]["labels"] = ["sky"]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    edited = imported(tmp_path, path, "import-3")
    assert (edited["records"], edited["unchanged"], edited["labels_changed"]) == (0, 3, 1)
    assert len(list((tmp_path / "data" / "annotations").iterdir())) == len(parts) + 1
    assert imported_sets(tmp_path) == {ids["0.jpg"]: ["sky"], ids["1.jpg"]: []}


def test_a_parquet_manifest_with_a_list_column(tmp_path):
    ids = images(tmp_path / "m", 3)
    table = pa.table({"path": ["0.jpg", "1.jpg", "2.jpg"], "labels": [["b", "a"], [], None]})
    pq.write_table(table, tmp_path / "m" / "sets.parquet")
    report = imported(tmp_path, tmp_path / "m" / "sets.parquet")
    assert (report["records"], report["label_sets"]) == (3, 2)
    assert imported_sets(tmp_path) == {ids["0.jpg"]: ["a", "b"], ids["1.jpg"]: []}


def test_hf_parquet_with_a_sequence_of_class_labels_written_by_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    names = ["cat", "dog", "fox"]
    features = datasets.Features(
        {"image": datasets.Image(), "labels": datasets.Sequence(datasets.ClassLabel(names=names))}
    )
    data = [jpeg_bytes(60 + i) for i in range(3)]
    rows = {"image": [{"bytes": d, "path": f"{i}.jpg"} for i, d in enumerate(data)], "labels": [[0, 2], [], [1]]}
    folder = tmp_path / "hf" / "data"
    folder.mkdir(parents=True)
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(folder / "train-00000-of-00001.parquet"))
    report = imported(tmp_path, tmp_path / "hf", kind="hf")
    assert (report["records"], report["label_sets"]) == (3, 3)
    ids = [make_record_id(d) for d in data]
    assert imported_sets(tmp_path) == {ids[0]: ["cat", "fox"], ids[1]: [], ids[2]: ["dog"]}


def test_an_hf_class_index_outside_the_class_names_is_refused_naming_file_and_row(tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {"image": datasets.Image(), "labels": datasets.Sequence(datasets.ClassLabel(names=["a"]))}
    )
    rows = {"image": [{"bytes": jpeg_bytes(70 + i), "path": f"{i}.jpg"} for i in range(2)], "labels": [[0], [0]]}
    file = tmp_path / "hf" / "train.parquet"
    file.parent.mkdir()
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(file))
    table = pq.read_table(file)  # a hand-edited file: row 1 names class 5 of a list of one
    table = table.set_column(1, "labels", pa.array([[0], [5]], pa.list_(pa.int64())))
    pq.write_table(table, file)
    with pytest.raises(ImportSourceError, match=r"train.parquet: row 1, column labels: class index 5"):
        imported(tmp_path, tmp_path / "hf", kind="hf")
    assert [p for p in (tmp_path / "data").rglob("*") if p.is_file()] == []  # nothing written


def test_a_label_studio_export_with_several_choices_gives_each_task_its_majority_set(tmp_path):
    ids = images(tmp_path / "ls", 2)

    def choices(*chosen: str) -> list[dict]:
        return [{"type": "choices", "from_name": "tags", "to_name": "image", "value": {"choices": list(chosen)}}]

    tasks = [
        {"id": 1, "data": {"image": "0.jpg"}, "annotations": [{"id": 9, "result": choices("sky", "sea")}]},
        {
            "id": 2,
            "data": {"image": "1.jpg"},
            "annotations": [
                {"id": 10, "result": choices("sea")},
                {"id": 11, "result": choices("sea", "boat")},
                {"id": 12, "result": []},  # submitted with nothing chosen: "none of these"
                {"id": 13, "result": choices("boat", "sky"), "was_cancelled": True},
            ],
        },
    ]
    (tmp_path / "ls" / "export.json").write_text(json.dumps(tasks))
    report = imported(tmp_path, tmp_path / "ls" / "export.json")
    assert report["label_sets"] == 2
    # task 2: sea 2 of 3 live answers (in), boat 1 of 3 (out)
    assert imported_sets(tmp_path) == {ids["0.jpg"]: ["sea", "sky"], ids["1.jpg"]: ["sea"]}


def test_a_single_label_manifest_imports_as_before(tmp_path):
    images(tmp_path / "m", 2)
    (tmp_path / "m" / "one.csv").write_text("path,label\n0.jpg,cat\n1.jpg,\n")
    report = imported(tmp_path, tmp_path / "m" / "one.csv")
    assert (report["labels"], report["label_sets"]) == (1, 0)
    rows = read_annotations(DataRoot(str(tmp_path / "data"))).select(["label", "labels"]).to_pylist()
    assert rows == [{"label": "cat", "labels": None}]


def test_parse_label_set_rule():
    assert parse_label_set("b; a") == ["a", "b"] and parse_label_set("") == [] and parse_label_set(None) is None
    assert parse_label_set("a|b,c") == ["a|b,c"]  # only ";" separates
    for bad, why in [(["a", "a"], "named twice"), ([3], "not a string"), (["a;b"], "separator"), ("a;;b", "empty")]:
        with pytest.raises(LabelSetError, match=why):
            parse_label_set(bad)
    with pytest.raises(LabelSetError, match=f"at most {MAX_SET_SIZE}"):
        parse_label_set([f"l{i}" for i in range(MAX_SET_SIZE + 1)])


HOSTILE = {
    "twice.jsonl": ([{"path": "0.jpg", "labels": ["a"]}, {"path": "1.jpg", "labels": ["cat", "cat"]}], "row 2"),
    "number.jsonl": ([{"path": "0.jpg", "labels": ["a", 7]}], "row 1"),
    "separator.jsonl": ([{"path": "0.jpg", "labels": []}, {"path": "1.jpg", "labels": ["a;b"]}], "row 2"),
    "mixed.jsonl": ([{"path": "0.jpg", "label": "cat"}, {"path": "1.jpg", "labels": ["cat", "dog"]}], "row 1"),
    "huge.csv": ("path,labels\n0.jpg,a\n1.jpg," + ";".join(f"l{i}" for i in range(10_000)) + "\n", "row 2"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_label_set_stops_flywheel_import_in_one_line_naming_file_and_row(tmp_path, monkeypatch, name):
    from corpus.settings import get_settings

    monkeypatch.setenv("FLYWHEEL_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("FLYWHEEL_WORK_DIR", str(tmp_path / "work"))
    get_settings.cache_clear()
    images(tmp_path / "m", 2)
    content, where = HOSTILE[name]
    path = tmp_path / "m" / name
    path.write_text(content if isinstance(content, str) else "".join(json.dumps(r) + "\n" for r in content))
    app = typer.Typer()
    app.command("import")(import_command)
    app.command("noop")(lambda: None)
    result = CliRunner().invoke(app, ["import", str(path), "--labels", "trusted"], terminal_width=400)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and where in lines[0], result.output
    assert not (tmp_path / "data").exists()  # nothing written: no raw shard, no annotation, no state

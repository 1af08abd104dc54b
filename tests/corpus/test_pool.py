"""The pool pointer and the gold file: remembered, read back, and clear errors when missing or malformed."""

from __future__ import annotations

import pyarrow as pa
import pytest

from corpus.pool import NoPoolError, latest_pool, read_gold, remember_pool, select_records
from corpus.store import DataRoot


def test_pool_pointer_round_trip_and_a_clear_error_before_any_ingest(tmp_path) -> None:
    root = DataRoot(str(tmp_path))
    with pytest.raises(NoPoolError, match="run `flywheel ingest`"):
        latest_pool(root)
    assert remember_pool(root, "curated/scrub-abc/kept") == "curated/scrub-abc/kept"
    assert latest_pool(root) == "curated/scrub-abc/kept"
    remember_pool(root, "curated/scrub-def/kept")
    assert latest_pool(root) == "curated/scrub-def/kept"


@pytest.mark.parametrize(
    "content",
    [["r1", "cat"], {"r1": 3}, {"r1": ["cat", 3]}, {"r1": [["cat"]]}, {"r1": None}, "cat"],
    ids=["list", "int-label", "list-with-int", "nested-list", "null", "string"],
)
def test_gold_file_must_be_an_object_of_strings(tmp_path, content) -> None:
    root = DataRoot(str(tmp_path))
    root.write_json("gold.json", content)
    with pytest.raises(ValueError, match=r"gold file gold\.json"):
        read_gold(root, "gold.json")


def test_a_multilabel_gold_file_holds_label_sets(tmp_path) -> None:
    root = DataRoot(str(tmp_path))
    root.write_json("gold.json", {"r1": ["cat", "dog"], "r2": []})
    assert read_gold(root, "gold.json") == {"r1": ["cat", "dog"], "r2": []}


def test_gold_file_reads_back_and_is_empty_without_a_path(tmp_path) -> None:
    root = DataRoot(str(tmp_path))
    assert read_gold(root, None) == {}
    with pytest.raises(FileNotFoundError, match=r"gold file nope\.json not found"):
        read_gold(root, "nope.json")
    root.write_json("gold.json", {"r1": "cat", "r2": "dog"})
    assert read_gold(root, "gold.json") == {"r1": "cat", "r2": "dog"}


def test_select_records_keeps_the_tables_order() -> None:
    table = pa.table({"record_id": ["a", "b", "c", "d"], "n": [1, 2, 3, 4]})
    assert select_records(table, ["d", "b", "zzz"]).column("n").to_pylist() == [2, 4]
    assert select_records(table, []).num_rows == 0

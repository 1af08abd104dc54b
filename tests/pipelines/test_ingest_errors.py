"""A missing, empty or corrupt input fails the curate flow in one line, writes nothing and never moves the pool."""

from __future__ import annotations

import pyarrow as pa
import pytest

from corpus.pool import latest_pool, remember_pool
from corpus.schema import RecordSchemaError, conform
from corpus.store import DataRoot
from pipelines.config import CurateParams
from pipelines.ingest import curate_flow

pytestmark = pytest.mark.prefect


@pytest.mark.parametrize(
    ("inputs", "error", "message"),
    [
        (["raw/nope"], FileNotFoundError, "input raw/nope does not exist"),
        (["raw/empty-folder"], FileNotFoundError, "holds no Parquet file"),
        (["raw/no-rows"], ValueError, "hold no rows"),
        (["raw/corrupt"], RecordSchemaError, "part-0000.parquet"),
        (["raw/ok", "raw/nope"], FileNotFoundError, "input raw/nope does not exist"),
    ],
)
def test_bad_inputs_fail_before_anything_is_written(prefect_api, tmp_path, inputs, error, message) -> None:
    root = DataRoot(str(tmp_path))
    remember_pool(root, "curated/scrub-earlier/kept")
    (tmp_path / "raw" / "empty-folder").mkdir(parents=True)
    root.write_table("raw/no-rows/part-0000.parquet", conform(pa.table({"record_id": pa.array([], pa.string())})))
    root.write_bytes("raw/corrupt/part-0000.parquet", b"PAR1 this is not a parquet file PAR1")
    root.write_table("raw/ok/part-0000.parquet", conform(pa.table({"record_id": ["r1"], "kind": ["text"]})))
    with pytest.raises(error, match=message):
        curate_flow(CurateParams(inputs=inputs, data_root=root.url))
    assert latest_pool(root) == "curated/scrub-earlier/kept"
    assert root.list_dirs("curated") == []  # no stage folder, not even a partial one

"""The release flow writes the exports its parameters ask for, beside the release, once it is published."""

from __future__ import annotations

import json

import pytest
from labeled_pools import make_labeled_pool

from corpus.exports.export import verify_export
from corpus.store import DataRoot
from pipelines.config import ReleaseParams
from pipelines.release import release_flow


@pytest.mark.prefect
def test_the_release_flow_writes_its_exports(prefect_api, tmp_path):
    root = DataRoot(str(tmp_path / "data"))
    pool = make_labeled_pool(root, per_class=6, seed=2)
    params = ReleaseParams(dataset="colours", pool=pool, exports=["hf", "csv"], data_root=root.url)
    manifest = release_flow(params)
    assert set(manifest["exports"]) == {"hf", "csv"}
    for fmt in ("hf", "csv"):
        found = verify_export(root, f"exports/colours/{manifest['version']}/{fmt}")
        assert found["release_id"] == manifest["release_id"] and sum(found["splits"].values()) == 24
    listed = json.loads((tmp_path / "data/exports/colours/v0001/csv/export.json").read_text())
    assert listed["labels"] == manifest["labels"] == ["blue", "gray", "green", "red"]

"""A release counts its labels by origin: an import with the trusted policy is `imported:<source>`."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from labeled_pools import make_labeled_pool

from corpus.store import DataRoot
from crawlers.importers.labels import annotation_rows
from pipelines.config import ReleaseParams
from pipelines.release import release_flow


def _import(root: DataRoot, origin: str, policy: str, labels: list[tuple[str, str]]) -> None:
    root.write_table(f"annotations/part-{origin[9:]}.parquet", annotation_rows(labels, origin, datetime.now(UTC)))
    report = {"label_origin": origin, "label_policy": policy, "finished_at": datetime.now(UTC).isoformat()}
    root.write_json(f"raw/import-{origin[9:]}/_report.json", report)


@pytest.mark.prefect
def test_a_release_counts_trusted_imported_labels_under_their_origin(prefect_api, tmp_path):
    root = DataRoot(str(tmp_path / "data"))
    pool = make_labeled_pool(root, per_class=6, seed=3)  # 24 records, one human vote each
    ids = root.read_table(pool).column("record_id").to_pylist()
    # The partner's labels are trusted (8, two against the human vote); the vendor's only vote (4).
    partner = [(rid, "red") for rid in ids[:8]]
    _import(root, "imported:partner", "trusted", partner)
    _import(root, "imported:vendor", "annotator", [(rid, "blue") for rid in ids[8:12]])

    manifest = release_flow(ReleaseParams(dataset="colours", pool=pool, data_root=root.url))
    sources = manifest["label_sources"]
    assert sources["imported:partner"] == 8
    assert sum(sources.values()) == 24 and "imported:vendor" not in sources
    assert manifest["extra"]["trusted_origins"] == ["imported:partner"]
    assert manifest["extra"]["imported_votes"] == {"imported:partner": 8, "imported:vendor": 4}

    nobody = release_flow(ReleaseParams(dataset="plain", pool=pool, trusted_origins=[], data_root=root.url))
    assert "imported:partner" not in nobody["label_sources"] and sum(nobody["label_sources"].values()) == 24

"""Curate then scrub through corpus.run_stage on a temporary data root: outputs, markers, reruns skipped."""

from __future__ import annotations

from corpus.stages import run_stage
from corpus.store import DataRoot
from curation.curate import CURATE
from curation.curate_config import CurateConfig
from curation.scrub import SCRUB, ScrubConfig


def test_run_stage_writes_outputs_and_skips_a_rerun(tmp_path, raw_table):
    root = DataRoot(str(tmp_path / "data"))
    root.write_table("raw/run1/part-0000.parquet", raw_table)

    curated = run_stage(root, CURATE, CurateConfig(), ["raw/run1"])
    out = curated["output"]
    for name in ("kept/part-0000.parquet", "dropped/part-0000.parquet", "_report.json", "_SUCCESS"):
        assert root.exists(f"{out}/{name}")
    assert (curated["rows_in"], curated["kept"], curated["dropped"]) == (13, 5, 8)
    assert curated["dropped_by_reason"]["near_duplicate"] == 1
    assert root.read_table(f"{out}/dropped").column("drop_reason").null_count == 0

    scrubbed = run_stage(root, SCRUB, ScrubConfig(), [f"{out}/kept"])
    assert (scrubbed["kept"], scrubbed["dropped"], scrubbed["skipped"]) == (5, 0, False)
    assert root.exists(f"{scrubbed['output']}/_SUCCESS")

    again = run_stage(root, CURATE, CurateConfig(), ["raw/run1"])
    assert again["skipped"] is True and again["output"] == out

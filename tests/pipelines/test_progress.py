"""Curate and scrub tell their progress after every shard: rows, bytes and drops so far, in order."""

from __future__ import annotations

from pathlib import Path

from corpus.stages import ShardSize, run_stage_sharded
from corpus.store import DataRoot
from crawlers.importers.config import ImportConfig
from crawlers.importers.importer import import_to_root
from curation.curate import run_curate
from curation.scrub import SCRUB, ScrubConfig
from pipelines.progress import map_telling, reporting_shards
from tests.crawlers.import_files import jpeg_bytes


def _imported(tmp_path: Path) -> tuple[DataRoot, str]:
    folder = tmp_path / "photos"
    folder.mkdir()
    for n in range(6):
        (folder / f"{n}.jpg").write_bytes(jpeg_bytes(n))
    good = jpeg_bytes(99)
    (folder / "cut.jpg").write_bytes(good[: len(good) // 2])  # truncated: dropped by curate's checks
    (folder / "copy.jpg").write_bytes(jpeg_bytes(0))  # an exact copy: dropped by the duplicate search
    root = DataRoot(str(tmp_path / "data"))
    report = import_to_root(root, ImportConfig(source=str(folder), name="p"), import_run="i-1", work_dir=tmp_path)
    return root, report["output"]


def test_each_shard_of_curate_and_scrub_tells_rows_bytes_and_drops(tmp_path):
    root, raw = _imported(tmp_path)
    size = ShardSize(rows=3)
    lines: list[str] = []
    with reporting_shards(lines.append):
        curated = run_curate(root, None, [raw], map_steps=map_telling("curate"), size=size)
        kept = [f"{curated['output']}/kept"]
        run_stage_sharded(root, SCRUB, ScrubConfig(ocr_pii=False), kept, None, map_telling("scrub"), size=size)
    assert curated["shards"] == 3 and curated["kept"] == 6
    measured = [line for line in lines if " measured" in line]
    assert [line.split(",")[0] for line in measured] == [f"curate: shard {k}/3 measured" for k in (1, 2, 3)]
    assert "8/8 rows" in measured[-1] and "1 dropped by checks" in measured[-1]
    content = sum(p.stat().st_size for p in (tmp_path / "photos").iterdir())
    assert f"8/8 rows, {content / 1e6:,.2f} MB" in measured[-1]
    written = [line for line in lines if line.startswith("curate: shard") and " written" in line]
    assert len(written) == 3 and written[-1].endswith("8/8 rows, 6 kept, 2 dropped")
    scrubbed = [line for line in lines if line.startswith("scrub:")]
    assert len(scrubbed) == 2 and scrubbed[-1] == "scrub: shard 2/2 written, 6/6 rows, 6 kept, 0 dropped"
    lines.clear()
    run_curate(root, None, [raw], index_path=None, map_steps=map_telling("curate"), size=size)
    assert lines == []  # a listener hears only while inside reporting_shards

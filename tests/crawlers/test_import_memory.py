"""An import's memory does not grow with the number of files: shards stream, the state waits on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.crawlers.import_files import jpeg_bytes

pytestmark = pytest.mark.timeout(300)
REPO = Path(__file__).resolve().parents[2]

_CHILD = """
import json, resource, sys
from pathlib import Path
from corpus.store import DataRoot
from crawlers.importers.config import ImportConfig
from crawlers.importers.importer import import_to_root
folder, data = Path(sys.argv[1]), Path(sys.argv[2])
cfg = ImportConfig(source=str(folder), name="many", shard_rows=100)
report = import_to_root(DataRoot(str(data)), cfg, import_run="import-1", work_dir=data / "work")
print(json.dumps({"records": report["records"], "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _run_in_child(script: str, tmp_path: Path, name: str, files: int) -> dict:
    """`script` run in a fresh interpreter on a folder of `files` small JPEGs; the JSON of its last line."""
    folder = tmp_path / f"{name}-{files}"
    folder.mkdir()
    for n in range(files):
        (folder / f"{n:06d}.jpg").write_bytes(jpeg_bytes(n, side=96))
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_ALBUMENTATIONS_UPDATE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", script, str(folder), str(tmp_path / f"{name}-data-{files}")],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _import_in_child(tmp_path: Path, files: int) -> dict:
    return _run_in_child(_CHILD, tmp_path, "flat", files)


def test_peak_memory_does_not_grow_with_the_file_count(tmp_path):
    small, large = _import_in_child(tmp_path, 200), _import_in_child(tmp_path, 3000)
    assert (small["records"], large["records"]) == (200, 3000)
    # 15x the files: holding their rows (3000 x 8.3 KB JPEGs) would add 25 MB; measured here: +1 MB.
    grown_mb = (large["peak_kb"] - small["peak_kb"]) / 1024
    assert grown_mb < 8, f"peak RSS grew by {grown_mb:.1f} MB from 200 to 3000 files"


_CURATE_CHILD = """
import json, resource, sys
from pathlib import Path
from corpus.stages import ShardSize, run_stage_sharded
from corpus.store import DataRoot
from crawlers.importers.config import ImportConfig
from crawlers.importers.importer import import_to_root
from curation.curate import run_curate
from curation.scrub import SCRUB, ScrubConfig
folder, data = Path(sys.argv[1]), Path(sys.argv[2])
root, size = DataRoot(str(data)), ShardSize(rows=100)
report = import_to_root(root, ImportConfig(source=str(folder), name="many"), import_run="import-1", work_dir=data / "w")
curated = run_curate(root, None, [report["output"]], size=size)
scrub_cfg = ScrubConfig(ocr_pii=False, blur_faces=False)
scrubbed = run_stage_sharded(root, SCRUB, scrub_cfg, [curated["output"] + "/kept"], size=size)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"kept": scrubbed["kept"], "shards": [curated["shards"], scrubbed["shards"]], "peak_kb": peak}))
"""


def _curate_in_child(tmp_path: Path, files: int) -> dict:
    return _run_in_child(_CURATE_CHILD, tmp_path, "curate", files)


def test_curate_and_scrub_choose_shards_from_the_input_so_memory_does_not_grow(tmp_path):
    # OCR and faces off: they hold one image (or one OCR batch) at a time whatever the shard size, and would
    # only make the test slow. Shards of 100 rows stand for the default 2,000 (corpus.stages.AUTO_SHARD_ROWS).
    small, large = _curate_in_child(tmp_path, 300), _curate_in_child(tmp_path, 1500)
    assert (small["kept"], large["kept"]) == (300, 1500)
    assert small["shards"] == [3, 3] and large["shards"] == [15, 15]
    # Measured here: +3 MB from 300 to 1,500 images in shards; one shard of 1,500 peaks 110 MB above that.
    grown_mb = (large["peak_kb"] - small["peak_kb"]) / 1024
    assert grown_mb < 30, f"peak RSS grew by {grown_mb:.1f} MB from 300 to 1500 images"


def test_what_each_shard_sends_back_does_not_grow_with_its_rows(tmp_path):
    """A shard's result travels to the process that maps the rounds (the flow's, on Dask): per-row lists or the
    shard's dedup index rows there would make that process grow with the input. Only counts come back; the
    index rows are written beside the output, a part per shard."""
    import pickle

    from corpus.stages import ShardSize
    from corpus.store import DataRoot
    from crawlers.importers.config import ImportConfig
    from crawlers.importers.importer import import_to_root
    from curation.curate import run_curate

    sent: dict[int, dict[str, int]] = {}
    for files in (60, 300):
        folder = tmp_path / f"in-{files}"
        folder.mkdir()
        for n in range(files):
            (folder / f"{n:05d}.jpg").write_bytes(jpeg_bytes(n, side=48))
        root = DataRoot(str(tmp_path / f"data-{files}"))
        report = import_to_root(root, ImportConfig(source=str(folder), name="m"), import_run="i", work_dir=tmp_path)
        sizes: dict[str, int] = {}

        def measuring_map(step, args, sizes=sizes):
            results = [step(*a) for a in args]
            sizes[step.__name__] = max(len(pickle.dumps(r)) for r in results)
            return results

        curated = run_curate(root, None, [report["output"]], map_steps=measuring_map, size=ShardSize(rows=files))
        assert curated["shards"] == 1 and curated["kept"] == files
        assert len(root.list(f"{curated['output']}/_index_rows", ".parquet")) == 1
        sent[files] = sizes
    # 5x the rows in the one shard: what write_shard sends back is the same few hundred bytes (before: 5x).
    assert sent[300]["write_shard"] < 1000 and sent[300]["write_shard"] - sent[60]["write_shard"] < 50, sent

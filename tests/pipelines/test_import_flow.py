"""The import flow: imported files go through curate and scrub into the pool as a crawl's do, once."""

from __future__ import annotations

import shutil

import pytest
import typer
from typer.testing import CliRunner

from corpus.pool import POOL_POINTER
from corpus.schema import make_record_id
from corpus.store import DataRoot
from crawlers.importers.config import ImportConfig
from crawlers.importers.sources import ImportSourceError
from pipelines.cli_import import import_command
from pipelines.config import ImportParams
from pipelines.imports import import_flow
from tests.crawlers.import_files import make_imagefolder, write_jpeg

pytestmark = [pytest.mark.prefect, pytest.mark.timeout(300)]


def _params(source, root: DataRoot, **options) -> ImportParams:
    return ImportParams(source=ImportConfig(source=str(source), **options), data_root=root.url)


def test_imported_files_are_curated_scrubbed_and_deduplicated_against_everything_kept(prefect_api, tmp_path):
    tree = make_imagefolder(tmp_path / "pets", per_class=3)
    (tree / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    shutil.copy(tree / "cat" / "0.jpg", tree / "dog" / "copy-of-a-cat.jpg")
    root = DataRoot(str(tmp_path / "data"))

    first = import_flow(_params(tree, root, label_policy="annotator"))
    assert first["import"]["records"] == 11
    dropped = first["curate"]["dropped_by_reason"]
    assert dropped.get("undecodable", 0) + dropped.get("truncated", 0) == 1 and dropped["exact_duplicate"] == 1
    broken = root.read_table(f"{first['curate']['output']}/dropped").to_pylist()
    assert {r["url"].rsplit("/", 1)[-1]: r["drop_reason"] for r in broken}["broken.jpg"] in ("undecodable", "truncated")
    pool = root.read_table(first["pool"])
    assert pool.num_rows == 9 and set(pool.column("source").to_pylist()) == {"pets"}
    assert set(pool.column("scrub_version").to_pylist()) != {None}  # scrubbed
    assert root.read_json(POOL_POINTER)["pool"] == first["pool"]

    pointer = root.read_bytes(POOL_POINTER)
    again = import_flow(_params(tree, root, label_policy="annotator"))
    assert again["import"]["records"] == 0 and again["curate"] is None and again["pool"] is None
    assert root.read_bytes(POOL_POINTER) == pointer  # nothing new: the pool pointer untouched

    other = tmp_path / "more"
    write_jpeg(other / "new.jpg", seed=500)
    shutil.copy(tree / "fox" / "1.jpg", other / "seen-before.jpg")
    third = import_flow(_params(other, root))
    assert third["import"]["records"] == 2
    assert third["curate"]["kept"] == 1 and third["curate"]["dropped_by_reason"] == {"exact_duplicate": 1}
    kept = root.read_table(third["pool"]).column("record_id").to_pylist()
    assert kept == [make_record_id((other / "new.jpg").read_bytes())]


def test_a_failed_import_leaves_the_pool_pointer_alone(prefect_api, tmp_path):
    root = DataRoot(str(tmp_path / "data"))
    root.write_json(POOL_POINTER, {"pool": "curated/earlier/kept", "at": "then"})
    before = root.read_bytes(POOL_POINTER)
    with pytest.raises(ImportSourceError, match="no such file or folder"):
        import_flow(_params(tmp_path / "nowhere", root))
    assert root.read_bytes(POOL_POINTER) == before
    assert not root.exists("raw")


def test_the_cli_command_imports_with_a_progress_bar_and_fails_in_one_line(prefect_api, tmp_path, monkeypatch):
    from corpus.settings import get_settings

    monkeypatch.setenv("FLYWHEEL_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("FLYWHEEL_WORK_DIR", str(tmp_path / "work"))
    get_settings.cache_clear()
    app = typer.Typer()
    app.command("import")(import_command)
    app.command("noop")(lambda: None)  # two commands, so `import` is a sub-command as under `flywheel`
    runner = CliRunner()
    missing = runner.invoke(app, ["import", str(tmp_path / "nowhere")])
    lines = [line for line in missing.output.splitlines() if line.strip()]
    assert missing.exit_code == 1 and len(lines) == 1 and "nowhere: no such file or folder" in lines[0], lines
    tree = make_imagefolder(tmp_path / "pets", per_class=2)
    done = runner.invoke(app, ["import", str(tree), "--name", "pets"])
    assert done.exit_code == 0, done.output
    assert "6 files" in done.output and '"kept": 6' in done.output
    # Curate and scrub tell each shard as it finishes (the 6 files are one automatic shard).
    assert "curate: shard 1/1 measured, 6/6 rows" in done.output, done.output
    assert "scrub: shard 1/1 written, 6/6 rows, 6 kept, 0 dropped" in done.output, done.output
    get_settings.cache_clear()

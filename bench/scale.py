"""Scale-out benchmark: curation (curate + scrub) sharded on 1 vs 2 Dask workers, and an s3:// data root vs local disk.

One generated corpus (bench.planted: photo-like images and prose pages with planted exact and near
copies) is curated four times through the real `curate` flow on a temporary Prefect server:

- one process: the stage as one task, no Dask (what `shards=1` runs);
- Dask, 1 worker: `shards=S`, a LocalCluster of one worker process;
- Dask, 2 workers: the same with two worker processes (this machine has 2 cores);
- Dask, 2 workers, data root on s3:// served by moto on 127.0.0.1 (every shard, partition file and
  output goes through the S3 API).

The Dask cases run on a LocalCluster started before timing (FLYWHEEL_DASK_ADDRESS), whose workers have
imported the pipeline once, as long-lived production workers have; throughput is input rows over the
curate + scrub stage seconds from their reports, the flow's wall time is printed beside it. Every run
must keep the same record ids, or the benchmark fails.
Closing line: `bench scale: ... ratio=<2-worker speed over 1-worker>`.

Run: `make bench-scale` (or `QUICK=1 make bench-scale`), or `.venv/bin/python bench/scale.py [--quick]`.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")

import httpx
import numpy as np

from bench.planted import generate_corpus
from corpus.store import DataRoot

BUCKET = "flywheel-bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_moto(scratch: Path) -> tuple[subprocess.Popen, str]:
    """moto's S3 server on a free loopback port (a real HTTP S3 API, in memory)."""
    port = free_port()
    moto = Path(sys.executable).with_name("moto_server")
    log = open(scratch / "moto.log", "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(endpoint, timeout=1)
            return proc, endpoint
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"moto_server did not start: {(scratch / 'moto.log').read_text()[-1000:]}")


def write_raw(root: DataRoot, table, files: int) -> None:
    bounds = np.linspace(0, table.num_rows, files + 1).astype(int)
    for k in range(files):
        root.write_table(f"raw/bench/part-{k:04d}.parquet", table.slice(bounds[k], bounds[k + 1] - bounds[k]))


def _warm_up() -> None:
    import pipelines.ingest  # noqa: F401 - what every curation task unpickles


def run_case(name: str, url: str, table, shards: int, workers: int | None) -> dict:
    """One curate flow on a fresh root at `url` (on a `workers`-process cluster, or none); timings, kept ids."""
    from distributed import Client, LocalCluster

    from corpus.settings import get_settings
    from pipelines.config import CurateParams, ScaleParams
    from pipelines.ingest import curate_flow

    root = DataRoot(url)
    write_raw(root, table, files=8)
    cluster = None
    if workers:
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        )
        with Client(cluster) as client:
            client.run(_warm_up)
        os.environ["FLYWHEEL_DASK_ADDRESS"] = cluster.scheduler_address
    else:
        os.environ.pop("FLYWHEEL_DASK_ADDRESS", None)
    get_settings.cache_clear()
    scale = ScaleParams(shards=shards, dask=True) if workers else ScaleParams()
    try:
        started = time.perf_counter()
        out = curate_flow(CurateParams(inputs=["raw/bench"], data_root=url, scale=scale))
        wall = time.perf_counter() - started
    finally:
        if cluster is not None:
            cluster.close()
    stage_seconds = out["curate"]["seconds"] + out["scrub"]["seconds"]
    kept = sorted(root.read_table(out["pool"]).column("record_id").to_pylist())
    return {
        "name": name,
        "rows": out["curate"]["rows_in"],
        "stage_s": stage_seconds,
        "wall_s": wall,
        "rows_per_s": out["curate"]["rows_in"] / stage_seconds,
        "kept": kept,
        "processes": out["curate"].get("processes", 1),
        "rounds": out["curate"].get("round_seconds"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", default=os.environ.get("QUICK") not in (None, "", "0"))
    parser.add_argument("--shards", type=int, default=8)
    args = parser.parse_args()
    images = pages = 400 if args.quick else 2500

    scratch = Path(tempfile.mkdtemp(prefix="flywheel-bench-scale-"))
    os.environ["PREFECT_HOME"] = str(scratch / "prefect")
    os.environ["FLYWHEEL_WORK_DIR"] = str(scratch / "work")
    moto, endpoint = start_moto(scratch)
    for name, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "FLYWHEEL_S3_ENDPOINT_URL": endpoint,
        "FLYWHEEL_S3_ACCESS_KEY_ID": "bench",
        "FLYWHEEL_S3_SECRET_ACCESS_KEY": "bench-secret",
        "FLYWHEEL_S3_REGION": "us-east-1",
    }.items():
        os.environ[name] = value
    try:
        from prefect.testing.utilities import prefect_test_harness

        started = time.perf_counter()
        corpus = generate_corpus(images=images, pages=pages, seed=5, duplicate_rate=0.1).table
        print(f"corpus: {corpus.num_rows} rows ({images} images, {pages} pages), {time.perf_counter() - started:.1f} s")
        DataRoot(f"s3://{BUCKET}").fs.mkdir(BUCKET)
        with prefect_test_harness(server_startup_timeout=120):
            cases = [
                run_case("one process", str(scratch / "one"), corpus, 1, None),
                run_case("dask 1 worker", str(scratch / "dask1"), corpus, args.shards, 1),
                run_case("dask 2 workers", str(scratch / "dask2"), corpus, args.shards, 2),
                run_case("dask 2 workers, s3", f"s3://{BUCKET}/dask2", corpus, args.shards, 2),
            ]
    finally:
        os.killpg(moto.pid, signal.SIGTERM)
        shutil.rmtree(scratch, ignore_errors=True)

    if any(c["kept"] != cases[0]["kept"] for c in cases):
        raise SystemExit("FAILED: the runs kept different records")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; shards={args.shards}")
    print(f"{'case':<22}{'rows':>7}{'stage s':>9}{'rows/s':>9}{'wall s':>9}{'procs':>7}  rounds (s)")
    for c in cases:
        rounds = " ".join(f"{k}={v:.1f}" for k, v in (c["rounds"] or {}).items())
        print(
            f"{c['name']:<22}{c['rows']:>7}{c['stage_s']:>9.1f}{c['rows_per_s']:>9.1f}{c['wall_s']:>9.1f}"
            f"{c['processes']:>7}  {rounds}"
        )
    one, single, double, s3 = cases
    ratio = double["rows_per_s"] / single["rows_per_s"]
    print(
        f"bench scale: rows={one['rows']} kept={len(one['kept'])} one-process={one['rows_per_s']:.1f} rows/s "
        f"dask-1={single['rows_per_s']:.1f} dask-2={double['rows_per_s']:.1f} "
        f"s3-vs-local={s3['stage_s'] / double['stage_s']:.2f}x-time ratio={ratio:.2f}"
    )


if __name__ == "__main__":
    main()

"""Scale-out benchmark: curation (curate + scrub) in one process vs sharded on 2 Dask workers, interleaved.

One generated corpus (bench.planted: photo-like images and prose pages with planted exact and near
copies; 50,000 rows at full size) is curated through the real `curate` flow on a temporary Prefect server,
the two cases alternating `--repeats` times so that the machine's load hits both alike:

- one process: the stage as one task, no Dask (what `shards=1` runs);
- Dask, 2 workers: `shards=S`, a LocalCluster of two worker processes (this machine has 2 cores).

`--extra` adds, once each: Dask with 1 worker, and Dask with 2 workers on an s3:// data root served by
moto on 127.0.0.1 (every shard, partition file and output through the S3 API). Before the cases, the
Prefect task overhead is measured on the 2-worker cluster: no-op tasks, one piece each, worker-seconds a
task. The Dask cases run on a LocalCluster started before timing (FLYWHEEL_DASK_ADDRESS), whose workers
have imported the pipeline once, as long-lived production workers have, and run with
`pipelines.runtime.QUIET_DASK` as make_task_runner's LocalCluster does; throughput is input rows over the
curate + scrub stage seconds from their reports, the flow's wall time is printed beside it. Every run
must keep the same record ids, or the benchmark fails.
Closing line: `bench scale: ... vs_one_process=<2-worker speed over one process, mean of the pairs>`.

Run: `make bench-scale` (or `QUICK=1 make bench-scale`), or `.venv/bin/python bench/scale.py [--quick]
[--rows N] [--repeats R] [--extra]`.
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


def _noop() -> None:
    return None


def start_cluster(workers: int):
    """A LocalCluster whose workers have imported the pipeline; FLYWHEEL_DASK_ADDRESS points at it."""
    from distributed import Client, LocalCluster

    from corpus.settings import get_settings
    from pipelines.runtime import quiet_dask

    quiet_dask()  # what make_task_runner configures a LocalCluster with
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )
    with Client(cluster) as client:
        client.run(_warm_up)
    os.environ["FLYWHEEL_DASK_ADDRESS"] = cluster.scheduler_address
    get_settings.cache_clear()
    return cluster


def measure_task_overhead(tasks: int = 24) -> float:
    """Worker-seconds one Prefect task of the sharded runner costs on a 2-worker cluster with nothing to do:
    `tasks` no-op pieces, one a task, over the cluster's two slots."""
    from prefect import flow, unmapped

    from pipelines.runtime import make_task_runner, run_pieces

    @flow(name="bench-task-overhead")
    def overhead_flow() -> float:
        run_pieces.map(unmapped(_noop), [[()]] * 2).result()  # the first tasks of a flow pay its client setup
        started = time.perf_counter()
        run_pieces.map(unmapped(_noop), [[()]] * tasks).result()
        return (time.perf_counter() - started) * 2 / tasks

    cluster = start_cluster(2)
    try:
        return overhead_flow.with_options(task_runner=make_task_runner(True))()
    finally:
        cluster.close()


def run_case(name: str, url: str, table, shards: int, workers: int | None) -> dict:
    """One curate flow on a fresh root at `url` (on a `workers`-process cluster, or none); timings, kept ids."""
    from corpus.settings import get_settings
    from pipelines.config import CurateParams, ScaleParams
    from pipelines.ingest import curate_flow

    root = DataRoot(url)
    write_raw(root, table, files=8)
    cluster = start_cluster(workers) if workers else None
    if cluster is None:
        os.environ.pop("FLYWHEEL_DASK_ADDRESS", None)
        get_settings.cache_clear()
    scale = ScaleParams(shards=shards, dask=True) if workers else ScaleParams()
    try:
        cpu = _cpu_seconds() + _workers_cpu_seconds(cluster)
        started = time.perf_counter()
        out = curate_flow(CurateParams(inputs=["raw/bench"], data_root=url, scale=scale))
        wall = time.perf_counter() - started
        cpu = _cpu_seconds() + _workers_cpu_seconds(cluster) - cpu
    finally:
        if cluster is not None:
            cluster.close()
    stage_seconds = out["curate"]["seconds"] + out["scrub"]["seconds"]
    print(f"  {name}: {stage_seconds:.1f} stage s, {wall:.1f} s wall, {cpu:.1f} CPU s, load {os.getloadavg()[0]:.1f}")
    kept = sorted(root.read_table(out["pool"]).column("record_id").to_pylist())
    if not url.startswith("s3://"):
        shutil.rmtree(url, ignore_errors=True)  # a full-size case writes ~1 GB
    return {
        "name": name,
        "shards": shards,
        "rows": out["curate"]["rows_in"],
        "stage_s": stage_seconds,
        "wall_s": wall,
        "rows_per_s": out["curate"]["rows_in"] / stage_seconds,
        "kept": kept,
        "processes": out["curate"].get("processes", 1),
        "rounds": out["curate"].get("round_seconds"),
        "curate_s": out["curate"]["seconds"],
        "scrub_s": out["scrub"]["seconds"],
        "commit_s": out["curate"].get("index_commit_seconds", 0.0),
        "load": os.getloadavg()[0],
        "cpu_s": cpu,
    }


def _workers_cpu_seconds(cluster) -> float:
    """CPU seconds so far of a cluster's worker processes and their children (0 without a cluster)."""
    if cluster is None:
        return 0.0
    from distributed import Client

    with Client(cluster) as client:
        return sum(client.run(_cpu_seconds).values())


def _cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (tesseract runs as one)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def measure_per_core(corpus) -> dict[str, float]:
    """Images/s and pages/s of curate + scrub on one core (in this process, no Prefect, no files): the
    figures a capacity model scales from. On up to 2,000 rows of each kind of the corpus."""
    import pyarrow.compute as pc

    from curation.curate import curate
    from curation.scrub import scrub

    rates = {}
    for kind in ("image", "text"):
        table = corpus.filter(pc.equal(corpus.column("kind"), kind)).slice(0, 2000)
        started = _cpu_seconds()  # what one core gives, whatever else the machine runs
        scrub(curate(table).kept)
        rates[kind] = table.num_rows / (_cpu_seconds() - started)
    return rates


def count_requests(log: Path) -> int:
    """S3 requests moto has answered so far (its access log: one line per request)."""
    return sum(1 for line in log.read_text(errors="replace").splitlines() if '" 20' in line or '" 30' in line)


def run_cases(args: argparse.Namespace, scratch: Path, corpus) -> tuple[float, list[dict]]:
    """The task overhead, then the interleaved pairs (one process, 2 workers), then the extra cases."""
    overhead = measure_task_overhead()
    print(f"  prefect task overhead: {overhead:.2f} worker-s a task", flush=True)
    cases = []
    for k in range(args.repeats):
        cases.append(run_case(f"one process #{k + 1}", str(scratch / f"one-{k}"), corpus, 1, None))
        cases.append(run_case(f"dask 2 workers #{k + 1}", str(scratch / f"dask2-{k}"), corpus, args.shards, 2))
    if args.extra:
        cases.append(run_case("dask 1 worker", str(scratch / "dask1"), corpus, args.shards, 1))
        before = count_requests(scratch / "moto.log")
        cases.append(run_case("dask 2 workers, s3", f"s3://{BUCKET}/dask2", corpus, args.shards, 2))
        cases[-1]["requests"] = count_requests(scratch / "moto.log") - before
    return overhead, cases


def serial_seconds(case: dict) -> dict[str, float]:
    """The parts of a case's wall time that do not spread over workers, from its own reports: the flow's
    settling, curate's work outside its rounds (planning, reading the index, the report), the index commit
    after the stage, and the flow's own overhead (wall time outside the two stages)."""
    rounds = case["rounds"] or {}
    return {
        "settle": rounds.get("settle", 0.0),
        "curate_outside_rounds": max(case["curate_s"] - sum(rounds.values()), 0.0) if rounds else 0.0,
        "index_commit": case["commit_s"],
        "flow_outside_stages": max(case["wall_s"] - case["stage_s"] - case["commit_s"], 0.0),
    }


def print_serial_steps(cases: list[dict], overhead: float) -> None:
    """Where a 2-worker case's time goes: its serial steps, the Prefect task overhead (tasks x the measured
    worker-seconds a task, over 2 workers), and the best speed-up those leave (Amdahl, against the one-process
    case before it)."""
    print("serial steps (s): settle, curate outside rounds, index commit, flow outside stages; prefect tasks")
    for k, case in enumerate(cases):
        if not case["name"].startswith("dask 2 workers #"):
            continue
        serial = serial_seconds(case)
        rounds = len(case["rounds"] or {}) - ("settle" in (case["rounds"] or {}))
        # PIECE_TASKS_PER_SLOT tasks per worker slot and round (curate's rounds and scrub's), at most one per shard
        from pipelines.runtime import PIECE_TASKS_PER_SLOT

        tasks = min(2 * PIECE_TASKS_PER_SLOT, case["shards"]) * (rounds + 1)
        prefect = tasks * overhead / 2
        one = cases[k - 1]
        fixed = sum(serial.values())
        bound = one["wall_s"] / (fixed + prefect + max(one["wall_s"] - fixed, 0.0) / 2)
        parts = " ".join(f"{name}={value:.1f}" for name, value in serial.items())
        print(
            f"  {case['name']}: {parts} prefect_tasks={tasks}x{overhead:.2f}/2={prefect:.1f}; "
            f"serial share {100 * (fixed + prefect) / case['wall_s']:.0f}% of {case['wall_s']:.0f} s wall; "
            f"curate {case['curate_s']:.1f} s + scrub {case['scrub_s']:.1f} s; "
            f"best 2-worker speed-up these leave: {bound:.2f}x"
        )


def report(args: argparse.Namespace, overhead: float, cases: list[dict], per_core: dict[str, float]) -> None:
    if any(c["kept"] != cases[0]["kept"] for c in cases):
        raise SystemExit("FAILED: the runs kept different records")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; shards={args.shards}")
    rates = f"{per_core['image']:.1f} images/s, {per_core['text']:.1f} pages/s"
    print(f"one core, curate + scrub in process: {rates} (over CPU seconds)")
    print(
        f"{'case':<22}{'rows':>7}{'stage s':>9}{'rows/s':>9}{'wall s':>9}{'CPU s':>8}{'procs':>6}{'load':>6}"
        "  rounds (s)"
    )
    for c in cases:
        rounds = " ".join(f"{k}={v:.1f}" for k, v in (c["rounds"] or {}).items())
        print(
            f"{c['name']:<22}{c['rows']:>7}{c['stage_s']:>9.1f}{c['rows_per_s']:>9.1f}{c['wall_s']:>9.1f}"
            f"{c['cpu_s']:>8.1f}{c['processes']:>6}{c['load']:>6.1f}  {rounds}"
        )
    print_serial_steps(cases, overhead)
    ones = [c for c in cases if c["name"].startswith("one process")]
    twos = [c for c in cases if c["name"].startswith("dask 2 workers #")]
    pairs = [two["rows_per_s"] / one["rows_per_s"] for one, two in zip(ones, twos, strict=True)]
    # CPU seconds the sharded run spends for each one the one-process run spends (flow and worker processes,
    # not the Prefect server): its overhead, whatever share of the cores the machine's load left it.
    cpu_cost = np.mean([two["cpu_s"] / one["cpu_s"] for one, two in zip(ones, twos, strict=True)])
    extra = {c["name"]: c for c in cases if "#" not in c["name"]}
    more = ""
    if extra:
        more = (
            f" dask-1={extra['dask 1 worker']['rows_per_s']:.1f}"
            f" s3-vs-local={extra['dask 2 workers, s3']['stage_s'] / twos[-1]['stage_s']:.2f}x-time"
            f" s3_requests={extra['dask 2 workers, s3']['requests']}"
        )
    print(
        f"bench scale: rows={ones[0]['rows']} kept={len(ones[0]['kept'])} "
        f"one-process={np.mean([c['rows_per_s'] for c in ones]):.1f} rows/s "
        f"dask-2={np.mean([c['rows_per_s'] for c in twos]):.1f} rows/s{more} "
        f"prefect_task_s={overhead:.2f} core_images_s={per_core['image']:.0f} core_pages_s={per_core['text']:.0f} "
        f"load={np.mean([c['load'] for c in cases]):.1f} "
        f"sharded_cpu_cost={cpu_cost:.2f}x pairs={','.join(f'{p:.2f}' for p in pairs)} "
        f"vs_one_process={np.mean(pairs):.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", default=os.environ.get("QUICK") not in (None, "", "0"))
    parser.add_argument("--rows", type=int, default=int(os.environ.get("ROWS") or 50_000))
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--extra", action="store_true", default=os.environ.get("EXTRA") not in (None, "", "0"))
    args = parser.parse_args()
    images = pages = 400 if args.quick else args.rows // 2

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
        per_core = measure_per_core(corpus)
        with prefect_test_harness(server_startup_timeout=120):
            overhead, cases = run_cases(args, scratch, corpus)
    finally:
        os.killpg(moto.pid, signal.SIGTERM)
        shutil.rmtree(scratch, ignore_errors=True)
    report(args, overhead, cases, per_core)


if __name__ == "__main__":
    main()

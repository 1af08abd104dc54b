"""The crawl launcher: runs the `site` spider in a subprocess (one Twisted reactor per crawl) and returns its report."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from corpus.store import DataRoot
from crawlers.child import PARENT_PIPE_ENV, TERM_GRACE_S
from crawlers.config import CrawlConfig, CrawlJob
from crawlers.progress import PROGRESS_NAME, progress_counts, read_progress

ProgressCallback = Callable[[dict[str, int]], None]
# How often the parent looks at the child's progress file: a stat and a tiny read, and the child's own
# FLYWHEEL_PROGRESS_INTERVAL_S decides how often it changes.
PROGRESS_POLL_S = 0.25

PROJECT_ROOT = Path(__file__).resolve().parents[1]
LOG_NAME = "_crawl.log"
_LOG_TAIL_CHARS = 4000


class CrawlError(RuntimeError):
    """The crawl subprocess failed or timed out; the message ends with the tail of its log."""


def _tail(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return text[-_LOG_TAIL_CHARS:]


REPORT_NAME = "_report.json"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """One SIGTERM (a clean Scrapy shutdown that a JOBDIR rerun resumes from), SIGKILL after TERM_GRACE_S."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=TERM_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait(
    proc: subprocess.Popen[bytes], timeout_s: float, progress_path: Path, on_progress: ProgressCallback | None
) -> dict[str, int] | None:
    """Wait for `proc` up to `timeout_s` (subprocess.TimeoutExpired after), handing each new progress to `on_progress`;
    returns the last counts handed on."""
    if on_progress is None:
        proc.wait(timeout=timeout_s)
        return None
    deadline, last = time.monotonic() + timeout_s, None
    while True:
        try:
            proc.wait(timeout=max(0.0, min(PROGRESS_POLL_S, deadline - time.monotonic())))
            return last
        except subprocess.TimeoutExpired:
            if time.monotonic() >= deadline:
                raise
        counts = read_progress(progress_path)
        if counts is not None and counts != last:
            on_progress(counts)
            last = counts


def build_command(job: CrawlJob, *, jobdir: Path | None = None, settings: dict[str, str] | None = None) -> list[str]:
    """The `scrapy crawl site ...` command line of `job` (run by crawlers.child): the whole job is one setting,
    FLYWHEEL_CRAWL_JOB (JSON).

    `jobdir`: Scrapy's JOBDIR (a rerun with the same folder resumes); `settings`: extra Scrapy settings.
    """
    merged = {CrawlJob.SETTING: job.to_setting(), **({"JOBDIR": str(jobdir)} if jobdir is not None else {})}
    merged.update(settings or {})
    cmd = [sys.executable, "-m", "crawlers.child", "crawl", "site"]
    for key, value in merged.items():
        cmd += ["-s", f"{key}={value}"]
    return cmd


def crawl(
    config: CrawlConfig,
    output_dir: Path,
    *,
    crawl_run: str,
    state_path: Path | None = None,
    jobdir: Path | None = None,
    settings: dict[str, str] | None = None,
    on_progress: ProgressCallback | None = None,
) -> dict:
    """Crawl as `config` says into Parquet shards under `output_dir`; return `_report.json` plus output and shards.

    Runs `scrapy crawl site` as a child process, so it can be called any number of times per process; it is
    stopped after `config.timeout_s`. Its log goes to `output_dir/_crawl.log`. Raises CrawlError (with the
    log's tail) on a non-zero exit, a timeout, or a missing report.

    `crawl_run`: the run's name, stamped on every record. `state_path`: the local SQLite file of per-URL
    validators and fingerprints (one per source, kept between runs) that an incremental crawl
    (`config.incremental`) needs: revisits send conditional requests and only changed content is written.
    `jobdir`: Scrapy's JOBDIR (a rerun with the same folder resumes). `settings`: extra Scrapy settings.
    `on_progress`: called with crawlers.progress counts (pages, images, refused, errors, bytes) as they change,
    every FLYWHEEL_PROGRESS_INTERVAL_S at most, and once more with the final report's figures.
    """
    if config.incremental != (state_path is not None):
        raise ValueError("an incremental crawl needs a state_path, and only an incremental one takes it")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if jobdir is not None:
        Path(jobdir).mkdir(parents=True, exist_ok=True)
    job = CrawlJob(
        config=config,
        crawl_run=crawl_run,
        output_dir=str(output_dir),
        state_path=str(state_path) if state_path is not None else None,
    )
    cmd = build_command(job, jobdir=jobdir, settings=settings)
    env = dict(os.environ)
    env["SCRAPY_SETTINGS_MODULE"] = "crawlers.settings"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    log_path = output_dir / LOG_NAME
    (output_dir / REPORT_NAME).unlink(missing_ok=True)
    progress_path = output_dir / PROGRESS_NAME
    progress_path.unlink(missing_ok=True)
    start_url = config.start_url
    # The child ends with this process: it watches the read end of this pipe for EOF (crawlers.child).
    watch_fd, keep_fd = os.pipe()
    env[PARENT_PIPE_ENV] = str(watch_fd)
    try:
        with log_path.open("wb") as log:
            try:
                proc = subprocess.Popen(
                    cmd, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, pass_fds=(watch_fd,)
                )
            finally:
                os.close(watch_fd)
            try:
                last = _wait(proc, config.timeout_s, progress_path, on_progress)
            except subprocess.TimeoutExpired:
                _stop(proc)
                message = f"crawl of {start_url} timed out after {config.timeout_s} s; log tail:\n{_tail(log_path)}"
                raise CrawlError(message) from None
            except BaseException:
                # KeyboardInterrupt, or a task runner's cancellation raised in this thread: stop the crawl
                # cleanly, as on a timeout, before passing it on (a signal handler needs the main thread).
                _stop(proc)
                raise
    finally:
        os.close(keep_fd)
        progress_path.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise CrawlError(f"crawl of {start_url} exited with {proc.returncode}; log tail:\n{_tail(log_path)}")
    root = DataRoot(str(output_dir))
    if not root.exists(REPORT_NAME):
        raise CrawlError(f"crawl of {start_url} wrote no {REPORT_NAME}; log tail:\n{_tail(log_path)}")
    report = root.read_json(REPORT_NAME)
    report["output"] = str(output_dir)
    report["shards"] = len(root.list("", ".parquet"))
    if on_progress is not None and progress_counts(report) != last:
        on_progress(progress_counts(report))
    return report


def crawl_to_root(
    root: DataRoot,
    config: CrawlConfig,
    *,
    crawl_run: str,
    work_dir: Path,
    settings: dict[str, str] | None = None,
    on_progress: ProgressCallback | None = None,
) -> dict:
    """Crawl as `config` says into `raw/<crawl_run>/` of `root` (a local folder or object storage).

    A local root is written in place, with the job folder and the per-source incremental state under
    `state/crawl/`. Scrapy needs a disk, so for any other root the crawl runs in a staging folder under
    `work_dir` (the job folder stays there), and then the shards and the log are uploaded, `_report.json`
    last: like a local crawl, a raw folder without its report is unfinished. The incremental state
    (SQLite) is downloaded before the crawl and uploaded after it. A retry after a failed upload uploads
    the finished staging folder again instead of crawling again; a successful upload removes it.
    `on_progress`: as crawlers.run.crawl takes it.
    """
    state_rel = f"state/crawl/{config.source}.sqlite"
    incremental = config.incremental
    if root.is_local:
        return crawl(
            config,
            Path(root.local_path(f"raw/{crawl_run}")),
            crawl_run=crawl_run,
            jobdir=Path(root.local_path(f"state/crawl/jobs/{crawl_run}")),
            state_path=Path(root.local_path(state_rel)) if incremental else None,
            settings=settings,
            on_progress=on_progress,
        )
    staging = Path(work_dir).absolute() / "crawl" / crawl_run
    raw_dir, state_path = staging / "raw", staging / "state.sqlite"
    if incremental and not state_path.exists() and root.exists(state_rel):
        staging.mkdir(parents=True, exist_ok=True)
        root.get_file(state_rel, str(state_path))
    if (raw_dir / REPORT_NAME).exists():  # crawled by an earlier try whose upload failed
        report = json.loads((raw_dir / REPORT_NAME).read_text())
        report["shards"] = len(list(raw_dir.glob("*.parquet")))
    else:
        report = crawl(
            config,
            raw_dir,
            crawl_run=crawl_run,
            jobdir=staging / "job",
            state_path=state_path if incremental else None,
            settings=settings,
            on_progress=on_progress,
        )
    files = sorted(p for p in raw_dir.iterdir() if p.is_file() and p.name != REPORT_NAME and p.name[0] != ".")
    for path in files:
        root.put_file(str(path), f"raw/{crawl_run}/{path.name}")
    if incremental:
        root.put_file(str(state_path), state_rel)
    root.put_file(str(raw_dir / REPORT_NAME), f"raw/{crawl_run}/{REPORT_NAME}")
    shutil.rmtree(staging, ignore_errors=True)
    report["output"] = root.uri(f"raw/{crawl_run}")
    return report

"""The crawl launcher: runs the `site` spider in a subprocess (one Twisted reactor per crawl) and returns its report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from corpus.store import DataRoot

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


def build_command(
    start_url: str,
    output_dir: Path,
    *,
    crawl_run: str,
    source: str,
    allowed_domains: list[str] | None = None,
    max_pages: int = 2000,
    jobdir: Path | None = None,
    settings: dict[str, str] | None = None,
) -> list[str]:
    """The `scrapy crawl site ...` command line for these arguments."""
    cmd = [sys.executable, "-m", "scrapy", "crawl", "site", "-a", f"start_url={start_url}"]
    cmd += ["-a", f"max_pages={int(max_pages)}"]
    if allowed_domains:
        cmd += ["-a", "allowed_domains=" + ",".join(allowed_domains)]
    merged = {
        "FLYWHEEL_OUTPUT_DIR": str(output_dir),
        "FLYWHEEL_CRAWL_RUN": crawl_run,
        "FLYWHEEL_SOURCE": source,
        **({"JOBDIR": str(jobdir)} if jobdir is not None else {}),
        **(settings or {}),
    }
    for key, value in merged.items():
        cmd += ["-s", f"{key}={value}"]
    return cmd


def crawl(
    start_url: str,
    output_dir: Path,
    *,
    crawl_run: str,
    source: str,
    allowed_domains: list[str] | None = None,
    max_pages: int = 2000,
    timeout_s: float = 900,
    jobdir: Path | None = None,
    settings: dict[str, str] | None = None,
) -> dict:
    """Crawl `start_url` into Parquet shards under `output_dir`; return `_report.json` plus output and shard count.

    Runs `scrapy crawl site` as a child process, so it can be called any number of times per process.
    Its log goes to `output_dir/_crawl.log`. Raises CrawlError (with the log's tail) on a non-zero exit,
    a timeout, or a missing report.
    """
    if not start_url.startswith(("http://", "https://")):
        raise ValueError(f"start_url must be an http(s) URL, got {start_url!r}")
    if max_pages < 1:
        raise ValueError(f"max_pages must be >= 1, got {max_pages}")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if jobdir is not None:
        Path(jobdir).mkdir(parents=True, exist_ok=True)
    cmd = build_command(
        start_url,
        output_dir,
        crawl_run=crawl_run,
        source=source,
        allowed_domains=allowed_domains,
        max_pages=max_pages,
        jobdir=jobdir,
        settings=settings,
    )
    env = dict(os.environ)
    env["SCRAPY_SETTINGS_MODULE"] = "crawlers.settings"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    log_path = output_dir / LOG_NAME
    (output_dir / "_report.json").unlink(missing_ok=True)
    with log_path.open("wb") as log:
        try:
            proc = subprocess.run(
                cmd, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            message = f"crawl of {start_url} timed out after {timeout_s} s; log tail:\n{_tail(log_path)}"
            raise CrawlError(message) from None
    if proc.returncode != 0:
        raise CrawlError(f"crawl of {start_url} exited with {proc.returncode}; log tail:\n{_tail(log_path)}")
    root = DataRoot(str(output_dir))
    if not root.exists("_report.json"):
        raise CrawlError(f"crawl of {start_url} wrote no _report.json; log tail:\n{_tail(log_path)}")
    report = root.read_json("_report.json")
    report["output"] = str(output_dir)
    report["shards"] = len(root.list("", ".parquet"))
    return report

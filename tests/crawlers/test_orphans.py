"""A crawl's Scrapy child ends with the process that started it: killed, terminated or interrupted mid-crawl."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hostile_site import HostileServer

from crawlers.run import PROJECT_ROOT

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc"),
]

# A parent that runs one crawl of the hostile site's slow drip page (a minute of one byte per 0.1 s).
PARENT = """
import sys
from pathlib import Path
from crawlers.config import CrawlConfig
from crawlers.run import crawl
config = CrawlConfig(start_url=sys.argv[1], source="s", allowed_private_hosts=["127.0.0.1"], timeout_s=300)
crawl(config, Path(sys.argv[2]), crawl_run="r", settings={"DOWNLOAD_TIMEOUT": "120"})
"""


def _state(pid: int) -> str | None:
    """The process's state letter (R, S, Z...), None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _alive(pid: int) -> bool:
    return _state(pid) not in (None, "Z")  # a zombie has ended; only its exit status is left to collect


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _wait_for(condition, what: str, limit_s: float = 30.0) -> None:
    """Wait until `condition()` holds; a liveness bound, not a measurement."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {limit_s} s for {what}")
        time.sleep(0.05)


def _crawl_in_a_parent(server: HostileServer, output: Path) -> tuple[subprocess.Popen[bytes], list[int]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, server.url + "/drip.html", str(output)], env=env)
    _wait_for(lambda: "/drip.html" in server.hits or parent.poll() is not None, "the crawl to reach the drip page")
    assert parent.poll() is None, "the parent ended before its crawl got going"
    crawl_children = _descendants(parent.pid)
    assert crawl_children, "the parent runs no crawl child"
    return parent, crawl_children


def test_the_crawl_child_ends_when_its_parent_is_killed(tmp_path: Path) -> None:
    """SIGKILL: the parent runs no code at all (a SIGTERM without a handler, or the OOM killer, are the same)."""
    with HostileServer() as server:
        parent, children = _crawl_in_a_parent(server, tmp_path / "run")
        assert len(children) >= 2  # the crawl process and its extraction worker(s)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        _wait_for(lambda: not any(_alive(pid) for pid in children), f"crawl processes {children} to end")
    # it went the clean way, as on a timeout: Scrapy's own SIGTERM shutdown
    assert "Received SIGTERM, shutting down gracefully" in (tmp_path / "run" / "_crawl.log").read_text()


def test_an_interrupted_crawl_stops_its_child_before_the_parent_exits(tmp_path: Path) -> None:
    with HostileServer() as server:
        parent, children = _crawl_in_a_parent(server, tmp_path / "run")
        os.kill(parent.pid, signal.SIGINT)  # KeyboardInterrupt inside crawl()'s wait
        assert parent.wait() != 0
        scrapy_child = children[0]
        assert not _alive(scrapy_child)  # crawl() stopped it before letting the interrupt through
        _wait_for(lambda: not any(_alive(pid) for pid in children), f"crawl processes {children} to end")

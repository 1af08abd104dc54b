"""The crawl child's entry point: Scrapy's command line, in a process that ends when the one that started it does."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

# crawlers.run keeps the write end of a pipe and hands this process the read end (its number in this
# variable). Nothing is ever written: the read returns EOF once the parent process is gone, however it
# went (SIGKILL and OOM kills included), and no polling is needed.
PARENT_PIPE_ENV = "FLYWHEEL_PARENT_PIPE_FD"
# As crawlers.run._stop does on a timeout: one SIGTERM (Scrapy closes cleanly: shards flushed, JOBDIR
# saved, report written), then SIGKILL if the in-flight downloads keep it open this long.
TERM_GRACE_S = 10.0


def _end_with_parent(fd: int) -> None:
    try:
        while os.read(fd, 1024):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(TERM_GRACE_S)  # a daemon thread: a crawl that closes within the grace never gets here
    os.kill(os.getpid(), signal.SIGKILL)


def watch_parent(fd: int) -> None:
    """Stop this process (SIGTERM, then SIGKILL after TERM_GRACE_S) when the pipe `fd` reaches EOF."""
    os.set_inheritable(fd, False)  # Scrapy's own children (extraction workers) must not hold it
    threading.Thread(target=_end_with_parent, args=(fd,), name="parent-watch", daemon=True).start()


# prctl(2) option: the signal this process gets when the thread that started it ends (Linux only).
PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux; elsewhere nothing happens).

    For the extraction workers (crawlers.extraction): they also end when their input pipe closes, but only
    after the batch in hand; this stops them at once when the crawl process is killed outright (a SIGKILL after
    the grace, the OOM killer). They have nothing to save, so SIGKILL. The pool starts its workers from the
    reactor's (main) thread, which lives as long as the crawl process.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # the parent died before the prctl: no signal will come
        os._exit(1)


def main() -> None:
    fd = os.environ.pop(PARENT_PIPE_ENV, None)
    if fd is not None:
        watch_parent(int(fd))
    from scrapy.cmdline import execute

    execute(["scrapy", *sys.argv[1:]])


if __name__ == "__main__":
    main()

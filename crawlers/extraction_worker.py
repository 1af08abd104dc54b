"""An extraction worker process: batches of pages in over one pipe, their texts back over another.

Started by crawlers.extraction (`python -c "...main(PID)" READ_FD WRITE_FD`). It imports trafilatura and parsel
only, not Scrapy (crawlers.page_text): a worker starts within ~0.2 s of CPU instead of ~0.4 s (import times here).
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
from collections.abc import Callable

from crawlers.child import die_with_parent

# A frame on the pipes: its length (8 bytes, network order), then a pickle (both ends are this project's).
FRAME_HEADER = struct.Struct("!Q")


def serve(read_fd: int, write_fd: int, extract_batch: Callable[[list[tuple[str, str]]], list[str | None]]) -> None:
    """The worker's loop: read a batch of (html, url), write back `extract_batch` of it; return at the end of the input.

    The crawl process closing its end (or dying, however) ends the input, so a worker never outlives it by
    more than the batch in hand.
    """
    with os.fdopen(read_fd, "rb") as source, os.fdopen(write_fd, "wb") as sink:
        while True:
            header = source.read(FRAME_HEADER.size)
            if len(header) < FRAME_HEADER.size:
                return
            (size,) = FRAME_HEADER.unpack(header)
            pages = pickle.loads(source.read(size))
            data = pickle.dumps(extract_batch(pages), protocol=pickle.HIGHEST_PROTOCOL)
            sink.write(FRAME_HEADER.pack(len(data)) + data)
            sink.flush()


def main(parent_pid: int) -> None:
    """A worker process: `python -c "...main(PID)" READ_FD WRITE_FD` (started by crawlers.extraction)."""
    die_with_parent(parent_pid)
    # here, not at the top: the crawl process imports this module for FRAME_HEADER and must not load trafilatura
    from crawlers.page_text import extract_texts

    serve(int(sys.argv[1]), int(sys.argv[2]), extract_texts)

"""Import items: one file a source names, a checked source, and the one error that stops an import."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"})


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


class ImportSourceError(ValueError):
    """A source that cannot be imported at all (missing, empty, unreadable, no path column); one line, naming it."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


@dataclass
class SourceItem:
    """One file a source names. `locator` (a local path, s3:// or http(s):// URL, or `file.parquet#row`) is its key
    in the import state; `data` holds content a source carries inline (a Parquet image column)."""

    locator: str
    size: int | None = None
    mtime: float | None = None
    label: str | None = None
    label_set: list[str] | None = None  # a multi-label answer (sorted; [] is "none of these"); label is then None
    fields: dict[str, str] = field(default_factory=dict)  # record columns: caption, alt_text, title, page_url
    metadata: dict[str, Any] = field(default_factory=dict)  # everything else the source said about it
    # rows of corpus.boxes.BOX_TYPE on an image of image_size (width, height); None: the source has no boxes
    boxes: list[dict[str, Any]] | None = None
    image_size: tuple[int, int] | None = None
    data: bytes | None = None
    skip: str | None = None  # not imported, and not a drop: e.g. a text file in an image folder
    refused: str | None = None  # named by the source but not importable: a drop, with this reason
    refused_detail: str | None = None  # one line naming the file and the annotation that made it refused


@dataclass
class Source:
    """A checked source: its kind and a fresh stream of its items on every call of `items()`."""

    kind: str
    location: str
    items: Callable[[], Iterator[SourceItem]]

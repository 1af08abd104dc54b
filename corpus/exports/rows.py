"""What an export holds: the image rows of a verified release per split, its label list, file names of images."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from corpus.releases.versions import Release
from corpus.schema import SPLITS
from corpus.tasks import task_of

# Magic numbers first: scrubbing may re-encode an image, and a wrong extension makes some readers refuse it.
_MAGIC = ((b"\xff\xd8\xff", "jpg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF8", "gif"), (b"BM", "bmp"))
_MIME = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "image/webp": "webp", "image/bmp": "bmp"}


@dataclass
class ExportRows:
    """The rows an export writes: image records per release split (train/val/test), sorted by record_id."""

    labels: list[str]
    splits: dict[str, pa.Table]
    skipped: dict[str, int] = field(default_factory=dict)
    boxes: bool = False  # every image row carries checked boxes whose labels are all in `labels`
    multilabel: bool = False  # rows carry label sets (`labels`), not one label each

    def label_index(self, label: str) -> int:
        return self.labels.index(label)

    def label_indices(self, labels: list[str] | None) -> list[int]:
        """The class indices of a label set, in label-list order."""
        return sorted(self.labels.index(name) for name in labels or [])


def image_extension(data: bytes, mime: str | None) -> str:
    """The file extension of an encoded image: from its bytes, else its mime type, else "bin"."""
    for magic, ext in _MAGIC:
        if data.startswith(magic):
            return ext
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return _MIME.get((mime or "").split(";")[0].strip().lower(), "bin")


def _check_label_names(labels: list[str]) -> None:
    """Labels become folder names (imagefolder) and file names: refuse those that are not one path component."""
    bad = [lab for lab in labels if not lab or "/" in lab or "\\" in lab or lab.startswith(".") or "\0" in lab]
    if bad:
        raise ValueError(f"labels that cannot be folder names: {bad}; rename them before exporting")


def export_labels(release: Release) -> list[str]:
    """The release's ordered label list (manifest "labels", else train's sorted labels), then any label found
    only in val/test (sorted), so that every exported row has a class index and model indices stay put."""
    train = release.manifest.get("labels")
    if release.manifest.get("task") == "detect":
        # A detect release's `label` is a stratification key (corpus.boxes.majority_box_label), not a class.
        return list(train or [])
    if task_of(release.manifest) == "multilabel":
        names = {n for s in SPLITS for chosen in release.split(s).column("labels").to_pylist() for n in chosen or []}
        return list(train or []) + sorted(names - set(train or []))
    if train is None:
        train = sorted({lab for lab in release.train.column("label").to_pylist() if lab is not None})
    others = {lab for s in ("val", "test") for lab in release.split(s).column("label").to_pylist()}
    return list(train) + sorted(others - set(train) - {None})


def _sorted_by_id(table: pa.Table) -> pa.Table:
    """`table` in record_id order; as it is when it already is (a release's splits are): sorting takes every
    row, a copy of every image's bytes (2.6 s of an 11 s webdataset export of 3,000 192 px PNGs)."""
    order = pc.sort_indices(table, [("record_id", "ascending")]).to_numpy()
    return table if np.array_equal(order, np.arange(table.num_rows)) else table.take(order)


def select_rows(release: Release) -> ExportRows:
    """The image rows of each split (text records and rows without image bytes are counted in `skipped`)."""
    labels = export_labels(release)
    _check_label_names(labels)
    splits: dict[str, pa.Table] = {}
    skipped = {"text records": 0, "images without bytes": 0}
    for split in SPLITS:
        table = release.split(split)
        is_image = pc.fill_null(pc.equal(table.column("kind"), "image"), False)
        has_bytes = pc.invert(pc.is_null(table.column("image")))
        skipped["text records"] += table.num_rows - pc.sum(is_image).as_py() if table.num_rows else 0
        keep = pc.and_(is_image, has_bytes)
        skipped["images without bytes"] += pc.sum(pc.and_(is_image, pc.invert(has_bytes))).as_py() or 0
        every_row = pc.all(keep).as_py() is not False  # None: an empty split
        splits[split] = _sorted_by_id(table if every_row else table.filter(keep))
    multilabel = task_of(release.manifest) == "multilabel"
    return ExportRows(labels, splits, {k: v for k, v in skipped.items() if v}, multilabel=multilabel)

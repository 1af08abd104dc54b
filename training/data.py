"""Torch datasets over release and pool tables of image records, decoded with OpenCV."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch.utils.data import Dataset


class ImageDecodeError(ValueError):
    """A record's `image` bytes are missing or cannot be decoded."""


def decode_image(data: bytes | None, record_id: str) -> np.ndarray:
    """RGB uint8 array (H, W, 3) of encoded image bytes; raises ImageDecodeError naming the record."""
    if not data:
        raise ImageDecodeError(f"record {record_id} has no image bytes")
    arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if arr is None:
        raise ImageDecodeError(f"record {record_id}: image bytes ({len(data)} B) cannot be decoded")
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


def image_rows(table: pa.Table) -> pa.Table:
    """Only the image records of `table` (kind == "image")."""
    if "kind" not in table.column_names:
        return table
    return table.filter(pc.equal(table.column("kind"), "image"))


def _to_tensor(transform: Callable | None, image: np.ndarray) -> torch.Tensor:
    if transform is not None:
        image = transform(image=image)["image"]
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()


class PoolImageDataset(Dataset):
    """Unlabeled image records; item i is (CHW float tensor, index i) so callers map back to record_id."""

    def __init__(self, table: pa.Table, transform: Callable | None = None) -> None:
        table = image_rows(table)
        self.record_ids: list[str] = table.column("record_id").to_pylist()
        self._images: list[bytes | None] = table.column("image").to_pylist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.record_ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return _to_tensor(self.transform, decode_image(self._images[i], self.record_ids[i])), i


class ReleaseImageDataset(Dataset):
    """Labeled image records of a release split; item i is (CHW float tensor, label index)."""

    def __init__(self, table: pa.Table, labels: Sequence[str], transform: Callable | None = None) -> None:
        table = image_rows(table)
        self.labels = list(labels)
        index = {name: k for k, name in enumerate(self.labels)}
        self.record_ids: list[str] = table.column("record_id").to_pylist()
        self._images: list[bytes | None] = table.column("image").to_pylist()
        names = table.column("label").to_pylist()
        unknown = sorted({n for n in names if n not in index}, key=str)
        if unknown:
            raise ValueError(f"labels not in the model's label list {self.labels}: {unknown}")
        self.targets: list[int] = [index[n] for n in names]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.record_ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return _to_tensor(self.transform, decode_image(self._images[i], self.record_ids[i])), self.targets[i]

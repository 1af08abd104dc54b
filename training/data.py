"""Torch datasets over release and pool tables of image records, decoded with OpenCV."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch.utils.data import Dataset, Sampler, get_worker_info


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


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from several integers (seed, epoch, worker), stable across processes and runs."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class EpochSampler(Sampler):
    """Yields (epoch, index) keys: a permutation of range(n) seeded by (seed, epoch) when `shuffle`.

    The epoch travels with each key to the loader workers, so ReleaseImageDataset reseeds its
    augmentation per (epoch, worker): an epoch draws the same crops whether it runs straight through
    or after a resume.
    """

    def __init__(self, n: int, seed: int, shuffle: bool = True) -> None:
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch) % (2**62))
            order = torch.randperm(self.n, generator=gen).tolist()
        else:
            order = range(self.n)
        return iter((self.epoch, i) for i in order)


class ReleaseImageDataset(Dataset):
    """Labeled image records of a release split; item i (or key (epoch, i)) is (CHW float tensor, label index).

    With `seed`, the transform is reseeded from (seed, epoch, worker id) the first time each loader
    worker sees an epoch: cheap (once per epoch per worker, not per image) and repeatable for a fixed
    number of workers.
    """

    def __init__(
        self, table: pa.Table, labels: Sequence[str], transform: Callable | None = None, seed: int | None = None
    ) -> None:
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
        self.seed = seed
        self._seeded_for: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.record_ids)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        epoch, i = key if isinstance(key, tuple) else (0, key)
        if self.seed is not None and hasattr(self.transform, "set_random_seed"):
            info = get_worker_info()
            worker = info.id if info is not None else -1
            if self._seeded_for != (epoch, worker):
                self.transform.set_random_seed(mix_seed(self.seed, epoch, worker))
                self._seeded_for = (epoch, worker)
        return _to_tensor(self.transform, decode_image(self._images[i], self.record_ids[i])), self.targets[i]

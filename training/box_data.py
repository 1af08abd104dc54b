"""Torch datasets over detection records: images and their `boxes`, augmented together, as CenterNet targets."""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch.utils.data import Dataset, get_worker_info

from corpus.boxes import BoxSet, box_set_from_rows, boxes_to_arrays, make_box_set, xywh_to_xyxy
from training.box_augment import augment_boxes
from training.data import decode_image, image_rows, mix_seed
from training.detector import encode_targets


def box_rows(table: pa.Table) -> pa.Table:
    """The image records of `table` whose `boxes` are known (an empty list: an image with no object)."""
    table = image_rows(table)
    if "boxes" not in table.column_names:
        return table.slice(0, 0)
    return table.filter(pc.is_valid(table.column("boxes")))


def box_labels(table: pa.Table) -> list[str]:
    """The sorted labels of every box of `table`: the detector's class list, index -> name."""
    return sorted({box["label"] for boxes in table.column("boxes").to_pylist() if boxes for box in boxes})


def truth_box_sets(table: pa.Table, labels: Sequence[str]) -> tuple[list[BoxSet], int]:
    """Each row's true boxes (pixels of the stored image) of the labels the model knows, and how many boxes of
    other labels were left out (labels absent from train: the model cannot predict them)."""
    known = set(labels)
    out, unknown = [], 0
    for boxes in table.column("boxes").to_pylist():
        rows = [b for b in boxes or [] if b["label"] in known]
        unknown += len(boxes or []) - len(rows)
        out.append(box_set_from_rows(rows) if rows else make_box_set(np.zeros((0, 4)), []))
    return out, unknown


class ReleaseBoxDataset(Dataset):
    """Boxed image records of a release split; item i (or key (epoch, i)) is (CHW float tensor, CenterNet
    targets of training.detector.encode_targets as tensors). Boxes of labels outside `labels` are dropped.

    `transform` (training.box_augment.build_box_transforms, coco format) must end at `input_size` square; with
    `seed` it is reseeded per (epoch, loader worker), as training.data.ReleaseImageDataset does."""

    def __init__(
        self, table: pa.Table, labels: Sequence[str], transform: A.Compose, input_size: int, seed: int | None = None
    ) -> None:
        table = box_rows(table)
        self.labels = list(labels)
        self._index = {name: k for k, name in enumerate(self.labels)}
        self.record_ids: list[str] = table.column("record_id").to_pylist()
        self._images: list[bytes | None] = table.column("image").to_pylist()
        self._boxes = [[b for b in boxes if b["label"] in self._index] for boxes in table.column("boxes").to_pylist()]
        self.transform, self.input_size, self.seed = transform, input_size, seed
        self._seeded_for: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.record_ids)

    def _reseed(self, epoch: int) -> None:
        info = get_worker_info()
        worker = info.id if info is not None else -1
        if self._seeded_for != (epoch, worker):
            self.transform.set_random_seed(mix_seed(self.seed, epoch, worker))
            self._seeded_for = (epoch, worker)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        epoch, i = key if isinstance(key, tuple) else (0, key)
        if self.seed is not None:
            self._reseed(epoch)
        image = decode_image(self._images[i], self.record_ids[i])
        xywh, names, _ = boxes_to_arrays(self._boxes[i])
        image, xywh, names = augment_boxes(self.transform, image, xywh, names)
        classes = [self._index[name] for name in names]
        targets = encode_targets(xywh_to_xyxy(xywh), classes, len(self.labels), self.input_size)
        return _chw(image), {name: torch.from_numpy(value) for name, value in targets.items()}


def _chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()


class PoolBoxImages(Dataset):
    """Image records to detect in; item i is (CHW float tensor after `transform`, the stored image's (width,
    height)), so boxes found at the input size map back to the image's own pixels."""

    def __init__(self, table: pa.Table, transform: A.Compose) -> None:
        table = image_rows(table)
        self.record_ids: list[str] = table.column("record_id").to_pylist()
        self._images: list[bytes | None] = table.column("image").to_pylist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.record_ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = decode_image(self._images[i], self.record_ids[i])
        size = torch.tensor([image.shape[1], image.shape[0]])
        return _chw(self.transform(image=image)["image"]), size

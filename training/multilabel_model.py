"""Multi-label training parts: multi-hot targets over a release split, and a run with a BCE head."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from training.data import ReleaseImageDataset, image_rows
from training.loop import Run

# A label is predicted present when its sigmoid output is at least this: the Bayes decision of a calibrated
# binary output with equal costs; not tuned per label on val (val splits of a few dozen items are too small).
PREDICT_THRESHOLD = 0.5


def multi_hot(label_sets: Sequence[Sequence[str] | None], labels: Sequence[str]) -> tuple[np.ndarray, int]:
    """(targets (N, K) float32 of 0/1 in `labels` order, how many chosen labels were outside `labels`)."""
    index = {name: k for k, name in enumerate(labels)}
    out = np.zeros((len(label_sets), len(labels)), dtype=np.float32)
    unknown = 0
    for i, chosen in enumerate(label_sets):
        for name in chosen or []:
            if name in index:
                out[i, index[name]] = 1.0
            else:
                unknown += 1
    return out, unknown


def union_labels(table: pa.Table) -> list[str]:
    """The sorted union of the `labels` sets of a table's rows: a multi-label model's label list."""
    return sorted({name for chosen in table.column("labels").to_pylist() for name in chosen or []})


class MultiLabelImageDataset(ReleaseImageDataset):
    """Image records of a release split with multi-hot targets: item i is (CHW float tensor, (K,) float 0/1).

    Labels of a row that the model's label list lacks are left out of its target (counted in `n_unknown`)."""

    def __init__(
        self, table: pa.Table, labels: Sequence[str], transform: Callable | None = None, seed: int | None = None
    ) -> None:
        table = image_rows(table)
        self.labels = list(labels)
        self.record_ids = table.column("record_id").to_pylist()
        self._images = table.column("image").to_pylist()
        hot, self.n_unknown = multi_hot(table.column("labels").to_pylist(), self.labels)
        self.targets = list(torch.from_numpy(hot))
        self.transform = transform
        self.seed = seed
        self._seeded_for = None


class MultiLabelRun(Run):
    """A Run whose head scores every label on its own: binary cross-entropy on the logits (BCEWithLogits),
    sigmoid probabilities, and the best checkpoint chosen by val micro F1 at PREDICT_THRESHOLD."""

    def loss(self, logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        loss = nn.functional.binary_cross_entropy_with_logits(logits, y.float(), reduction="none").sum(1)
        return loss.sum() if reduction == "sum" else loss.mean()

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    def val_score(self, probs: np.ndarray, targets: np.ndarray) -> float | None:
        from training.multilabel_evaluation import compute_micro_f1

        return compute_micro_f1(probs >= PREDICT_THRESHOLD, targets >= 0.5) if len(probs) else None


def multilabel_datasets(release, train_tf: Callable, eval_tf: Callable, seed: int) -> tuple[list[str], list, int]:
    """(labels, [train, val, test] MultiLabelImageDatasets, val/test labels left out) of a multi-label release:
    the label list is the release manifest's (else train's union), and val/test labels outside it are dropped."""
    train_t = image_rows(release.train)
    labels = list(release.manifest.get("labels") or union_labels(train_t))
    val = MultiLabelImageDataset(release.val, labels, eval_tf)
    test = MultiLabelImageDataset(release.test, labels, eval_tf)
    return (
        labels,
        [MultiLabelImageDataset(train_t, labels, train_tf, seed=seed), val, test],
        val.n_unknown + test.n_unknown,
    )


def describe_label_sets(probs: np.ndarray, labels: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(predicted sets, confidences) of sigmoid outputs (N, K): each set is the labels at or above
    PREDICT_THRESHOLD joined by ";" in label order (PREDICTION_SCHEMA's predicted_label holds one string; ""
    = none of them), its confidence the mean over labels of max(p, 1 - p), in [0.5, 1] (low = unsure)."""
    probs = np.asarray(probs, np.float64).reshape(-1, len(labels))
    sets = [";".join(name for name, p in zip(labels, row, strict=True) if p >= PREDICT_THRESHOLD) for row in probs]
    confidence = np.maximum(probs, 1.0 - probs).mean(1) if len(probs) else np.zeros(0)
    return sets, confidence

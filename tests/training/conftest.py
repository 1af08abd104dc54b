"""Fixtures for training tests: a release of synthetic, learnable coloured-shape images."""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import cv2
import numpy as np
import pyarrow as pa
import pytest
import torch

from corpus.releases.build import build_release
from corpus.releases.config import ReleaseConfig
from corpus.schema import conform, make_record_id
from corpus.store import DataRoot

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = {"circle": (220, 40, 40), "square": (40, 200, 40), "triangle": (40, 60, 230), "cross": (230, 210, 30)}


def draw_shape(kind: str, rng: np.random.Generator, side: int = 40) -> bytes:
    """PNG bytes of one shape in its class colour (jittered) at a random place and size on a noisy background."""
    img = rng.integers(0, 60, size=(side, side, 3), dtype=np.uint8)
    colour = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in COLOURS[kind])
    r = int(rng.integers(side // 5, side // 3))
    cx, cy = (int(v) for v in rng.integers(r, side - r, size=2))
    if kind == "circle":
        cv2.circle(img, (cx, cy), r, colour, -1)
    elif kind == "square":
        cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), colour, -1)
    elif kind == "triangle":
        pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
        cv2.fillPoly(img, [pts], colour)
    else:
        cv2.line(img, (cx - r, cy - r), (cx + r, cy + r), colour, 3)
        cv2.line(img, (cx - r, cy + r), (cx + r, cy - r), colour, 3)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def _make_shape_records(per_class: int, seed: int = 0) -> pa.Table:
    """`per_class` labeled image records of each shape (RECORD_SCHEMA)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(per_class):
        for kind in SHAPES:
            image = draw_shape(kind, rng)
            rows.append(
                {
                    "record_id": make_record_id(image),
                    "kind": "image",
                    "image": image,
                    "width": 40,
                    "height": 40,
                    "mime": "image/png",
                    # Every 6th image and its neighbour form a planted near-duplicate pair.
                    "near_dup_cluster": f"{kind}-{i // 2}" if i % 6 < 2 else None,
                    "label": kind,
                    "label_source": "human",
                    "label_confidence": 1.0,
                    "annotators": ["sim-1"],
                }
            )
    return conform(pa.Table.from_pylist(rows))


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Train on one thread in these tests: the 2 shared cores run other suites too, and oversubscribed
    intra-op threads were measured 3x slower per epoch (2.3 s vs 0.7 s) than one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def make_shape_records():
    """The factory `(per_class, seed=0) -> pa.Table` of labeled synthetic shape records."""
    return _make_shape_records


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory) -> DataRoot:
    """A data root holding release v0001 of dataset "shapes": 4 classes x 30 synthetic images."""
    root = DataRoot(str(tmp_path_factory.mktemp("shapes")))
    build_release(root, "shapes", _make_shape_records(30), ReleaseConfig())
    return root

"""Active-learning selection: k-center spreads picks, uncertainty orders correctly, shapes are validated."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from labeling.selection import (
    compute_cheap_embeddings,
    get_uncertainty_scores,
    select_diverse,
    select_uncertain,
)


def _png(color: tuple[int, int, int], size: int = 32) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format="PNG")
    return buf.getvalue()


def test_k_center_picks_one_point_per_planted_cluster() -> None:
    rng = np.random.default_rng(1)
    centers = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=float)
    # 50 points in the first cluster, 2 in each other: random sampling would mostly hit cluster 0.
    sizes = [50, 2, 2, 2]
    points = np.concatenate([c + rng.normal(0, 0.1, (n, 2)) for c, n in zip(centers, sizes, strict=True)])
    cluster = np.repeat(np.arange(4), sizes)
    picked = select_diverse(points, 4, seed=0)
    assert sorted(cluster[picked].tolist()) == [0, 1, 2, 3]
    assert len(set(picked.tolist())) == 4


def test_k_center_handles_k_larger_than_n_and_zero() -> None:
    emb = np.eye(3, dtype=np.float32)
    assert sorted(select_diverse(emb, 10).tolist()) == [0, 1, 2]
    assert select_diverse(emb, 0).shape == (0,)


@pytest.mark.parametrize("method", ["least_confidence", "margin", "entropy"])
def test_uncertainty_orders_confident_below_uncertain(method: str) -> None:
    probs = np.array([[0.98, 0.01, 0.01], [0.6, 0.3, 0.1], [0.34, 0.33, 0.33], [1.0, 0.0, 0.0]])
    scores = get_uncertainty_scores(probs, method)
    assert scores.shape == (4,)
    assert np.all((scores >= 0) & (scores <= 1))
    assert scores[3] == pytest.approx(0.0, abs=1e-9)
    assert scores[3] < scores[0] < scores[1] < scores[2]
    assert scores[2] > 0.9


def test_select_uncertain_takes_most_uncertain_and_diversifies() -> None:
    # rows 0-2: uncertain near-duplicates; row 3: uncertain and different; row 4-5: confident
    probs = np.array([[0.5, 0.5], [0.51, 0.49], [0.5, 0.5], [0.55, 0.45], [0.99, 0.01], [0.95, 0.05]])
    assert set(select_uncertain(probs, 2).tolist()) <= {0, 1, 2}
    emb = np.array([[1, 0], [1, 0.01], [1, 0.02], [0, 1], [0.5, 0.5], [0.5, 0.5]], dtype=float)
    picked = select_uncertain(probs, 2, embeddings=emb, pool_factor=2)
    assert 3 in picked.tolist()
    assert not set(picked.tolist()) & {4, 5}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: get_uncertainty_scores(np.array([0.5, 0.5])), "2-D"),
        (lambda: get_uncertainty_scores(np.array([[0.5, 0.7]])), "sum to 1"),
        (lambda: get_uncertainty_scores(np.array([[1.0]])), "at least 2 classes"),
        (lambda: get_uncertainty_scores(np.array([[0.5, 0.5]]), "bald"), "unknown uncertainty method"),
        (lambda: select_uncertain(np.array([[0.5, 0.5]]), 1, embeddings=np.zeros((2, 3))), "rows"),
        (lambda: select_diverse(np.array([[np.nan, 1.0]]), 1), "NaN"),
        (lambda: select_diverse(np.zeros((3, 2)), -1), "k must be"),
    ],
)
def test_bad_shapes_and_values_are_rejected(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_cheap_embeddings_separate_colours_and_reject_broken_bytes() -> None:
    images = [_png((250, 10, 10)), _png((245, 15, 12), size=40), _png((10, 10, 250))]
    emb = compute_cheap_embeddings(images)
    assert emb.shape[0] == 3 and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # the two reds are closer to each other than to the blue
    assert emb[0] @ emb[1] > emb[0] @ emb[2]
    with pytest.raises(ValueError, match="image 1 cannot be decoded"):
        compute_cheap_embeddings([images[0], b"not an image"])

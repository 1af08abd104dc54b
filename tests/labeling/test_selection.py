"""Active-learning selection: k-center spreads picks, uncertainty orders correctly, shapes are validated."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from labeling.selection import (
    apply_class_quota,
    compute_cheap_embeddings,
    compute_prediction_agreement,
    get_uncertainty_scores,
    select_batch,
    select_coreset,
    select_diverse,
    select_hybrid,
    select_uncertain,
    should_stop,
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


def _blobs(sizes: list[int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 10, (len(sizes), 2))
    points = np.concatenate([c + rng.normal(0, 0.2, (n, 2)) for c, n in zip(centers, sizes, strict=True)])
    return points, np.repeat(np.arange(len(sizes)), sizes)


def test_coreset_fills_the_regions_the_labeled_set_leaves_empty() -> None:
    points, cluster = _blobs([40, 40, 40, 40])
    labeled = points[cluster < 2][:5]  # clusters 0 and 1 are already covered
    picked = select_coreset(points, 2, labeled=labeled)
    assert sorted(cluster[picked].tolist()) == [2, 3]
    with pytest.raises(ValueError, match="dims"):
        select_coreset(points, 2, labeled=np.zeros((1, 3)))


def test_class_quota_guarantees_each_predicted_class_and_never_repeats() -> None:
    predicted = np.array([0] * 8 + [1, 2])
    order = np.arange(10)  # the model ranks all class-0 items first
    picks = apply_class_quota(order, predicted, 5, min_per_class=1)
    assert len(picks) == 5 and len(set(picks.tolist())) == 5
    assert set(predicted[picks].tolist()) == {0, 1, 2}
    assert picks.tolist() == sorted(picks.tolist())  # still in the ranking's order
    # a class with fewer items than the quota gets all it has, no more
    assert (predicted[apply_class_quota(order, predicted, 6, min_per_class=3)] == 1).sum() == 1
    with pytest.raises(ValueError, match="twice"):
        apply_class_quota(np.array([1, 1]), predicted, 1, 1)


def test_hybrid_prefers_uncertain_items_spread_over_the_space() -> None:
    points, cluster = _blobs([30, 30, 30])
    probs = np.full((90, 2), 0.5)
    probs[cluster == 2] = [0.99, 0.01]  # cluster 2 is certain: never picked
    picked = select_hybrid(probs, points, 4, pool_factor=15)
    assert not set(cluster[picked].tolist()) & {2}
    assert set(cluster[picked].tolist()) == {0, 1}  # diversity: both uncertain clusters


STRATEGIES = ["random", "diversity", "least-confidence", "margin", "entropy", "coreset", "hybrid"]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_select_batch_picks_k_distinct_with_priorities_in_range(strategy: str) -> None:
    points, _ = _blobs([20, 20, 20])
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(60, 3))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    picks, prio = select_batch(
        strategy,
        10,
        n=60,
        probs=probs,
        embeddings=points,
        cold_embeddings=points,
        labeled_embeddings=points[:3],
        min_per_class=2,
    )
    assert len(picks) == 10 == len(set(picks.tolist()))
    assert np.all((prio >= 0) & (prio <= 1))
    if strategy != "random" and strategy != "diversity":
        assert all((probs[picks].argmax(axis=1) == c).sum() >= 2 for c in range(3))
    with pytest.raises(ValueError, match="needs"):
        select_batch("hybrid", 3, n=60)


def test_stopping_signal_fires_only_once_predictions_stabilise() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 3, 500)
    moving = base.copy()
    moving[:150] = (moving[:150] + 1) % 3  # a model still changing its mind on 30% of the stop set
    assert compute_prediction_agreement(base, base) == 1.0
    assert compute_prediction_agreement(base, moving) < 0.8
    assert not should_stop([0.6, 0.8, 0.995])
    assert not should_stop([0.999, 0.999])  # not enough rounds yet
    assert should_stop([0.7, 0.995, 0.999, 1.0])

"""TypiClust cold start: one typical pick per cluster, covered clusters left alone, wired into plan_round."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from labeling.rounds import plan_next_batch, plan_round
from labeling.typicality import get_typicality_scores, select_typical
from tests.labeling.test_rounds import _pool


def _clusters(n_clusters: int, per: int, dim: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(points (n_clusters * per, dim), cluster of each, the centres): tight Gaussian blobs far apart."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=10.0, size=(n_clusters, dim))
    labels = np.repeat(np.arange(n_clusters), per)
    points = centres[labels] + rng.normal(scale=0.5, size=(len(labels), dim))
    return points, labels, centres


def test_typiclust_picks_one_point_per_cluster_near_its_centre() -> None:
    points, labels, centres = _clusters(6, 40)
    picks = select_typical(points, 6, seed=1)
    assert sorted(labels[picks].tolist()) == list(range(6))  # one per cluster
    picked_gap = np.linalg.norm(points[picks] - centres[labels[picks]], axis=1)
    typical_gap = np.array([np.median(np.linalg.norm(points[labels == c] - centres[c], axis=1)) for c in range(6)])
    # The most typical point sits in the dense core: closer to its centre than the cluster's median point.
    assert np.all(picked_gap < typical_gap[labels[picks]])


def test_typicality_is_highest_in_the_dense_core_and_outliers_are_least_typical() -> None:
    points, _, centres = _clusters(1, 60, dim=2)
    outlier = centres[0] + np.array([8.0, 0.0])
    scores = get_typicality_scores(np.vstack([points, outlier]))
    assert scores.argmin() == len(points)
    assert np.linalg.norm(points[scores[:-1].argmax()] - centres[0]) < 0.6


def test_labeled_points_cover_their_clusters_so_picks_go_elsewhere() -> None:
    points, labels, _ = _clusters(4, 30, seed=2)
    labeled = points[labels < 2][:2]  # one labeled point in clusters 0 and 1 (they lead their blobs)
    candidates = np.flatnonzero(~np.isin(np.arange(len(points)), [0, 30]))
    picks = select_typical(points[candidates], 2, labeled=labeled, seed=0)
    assert sorted(labels[candidates[picks]].tolist()) == [2, 3]


def test_budget_beyond_clusters_and_bad_input() -> None:
    points, _, _ = _clusters(3, 10)
    picks = select_typical(points, 12)
    assert len(picks) == 12 == len(set(picks.tolist()))
    assert len(select_typical(points[:4], 10)) == 4  # a tiny pool gives what it has
    assert len(select_typical(points, 0)) == 0
    with pytest.raises(ValueError, match="finite 2-D"):
        select_typical(points[:, 0], 2)
    with pytest.raises(ValueError, match="dims"):
        select_typical(points, 2, labeled=np.zeros((1, 3)))


def _embedding_table(ids: list[str], emb: np.ndarray, encoder: str = "simclr-0001") -> pa.Table:
    table = pa.table({"record_id": ids, "embedding": [row.astype(np.float32).tolist() for row in emb]})
    return table.replace_schema_metadata({"flywheel.encoder": encoder})


def test_cold_start_uses_pool_embeddings_and_falls_back_to_pixels() -> None:
    pool = _pool(60)
    ids = pool.column("record_id").to_pylist()
    points, labels, _ = _clusters(5, 12, seed=3)
    by_id = dict(zip(ids, labels.tolist(), strict=True))
    embeddings = _embedding_table(ids, points)
    plan = plan_round(pool, set(), 5, pool_embeddings=embeddings)
    assert plan.strategy == "typiclust" and plan.embeddings == "simclr-0001" and not plan.uses_model
    assert sorted(by_id[r] for r in plan.record_ids) == list(range(5))
    # Pushed records cover their clusters: the next round goes to the others.
    pushed = {ids[0], ids[12]}  # one of cluster 0, one of cluster 1
    second = plan_next_batch(pool, pushed, {}, budget=3, pool_embeddings=embeddings)
    assert sorted(by_id[r] for r in second.record_ids) == [2, 3, 4]
    # Embeddings of an older pool (a candidate missing) leave the cold start to today's pixel diversity.
    stale = _embedding_table(ids[:-1], points[:-1])
    assert plan_round(pool, set(), 5, pool_embeddings=stale).strategy == "diversity"
    asked = plan_round(pool, set(), 5, strategy="typiclust", pool_embeddings=stale)
    assert asked.strategy == "typiclust" and asked.embeddings == "pixels" and len(asked.record_ids) == 5

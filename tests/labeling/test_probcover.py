"""ProbCover cold start: delta from k-means purity, greedy coverage of dense balls, wired into plan_round."""

from __future__ import annotations

import numpy as np
import pytest

from labeling.probcover import PURITY, find_pure_radius, select_covering
from labeling.rounds import plan_next_batch, plan_round
from labeling.selection import select_batch
from tests.labeling.test_rounds import _pool
from tests.labeling.test_typicality import _clusters, _embedding_table


def _normalised(points: np.ndarray) -> np.ndarray:
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def test_delta_is_the_largest_radius_with_pure_balls_and_stays_inside_the_clusters() -> None:
    points, labels, _ = _clusters(4, 50, seed=4)
    delta, pseudo = find_pure_radius(points, 4, seed=0)
    # Four well separated blobs: k-means finds them.
    assert len({(a, b) for a, b in zip(labels.tolist(), pseudo.tolist(), strict=True)}) == 4
    emb = _normalised(points)
    dist = np.linalg.norm(emb[:, None] - emb[None], axis=2)
    other = pseudo[:, None] != pseudo[None]

    def purity(radius: float) -> float:
        return float(np.mean(~np.any(other & (dist < radius), axis=1)))

    assert purity(delta) >= PURITY
    assert purity(float(np.nextafter(delta, 2.0)) + 1e-9) < PURITY  # the largest such radius
    # Separated blobs: a ball of radius delta holds most of its own blob.
    same = ~other & (dist > 0)
    assert delta > np.median(dist[same])


def test_first_pick_is_the_densest_ball_and_picks_spread_over_clusters() -> None:
    rng = np.random.default_rng(5)
    dense = rng.normal(scale=0.05, size=(80, 2)) + np.array([10.0, 0.0])
    sparse = rng.normal(scale=0.05, size=(20, 2)) + np.array([0.0, 10.0])
    points = np.vstack([sparse, dense])
    picks = select_covering(points, 2, n_classes=2)
    assert picks[0] >= 20  # the dense cluster first (most points covered)
    assert picks[1] < 20  # then the other cluster: the dense one is covered already
    many, labels, _ = _clusters(6, 30, seed=6)
    six = select_covering(many, 6, n_classes=6, seed=0)
    assert sorted(labels[six].tolist()) == list(range(6))


def test_labeled_points_cover_their_balls_so_picks_go_elsewhere() -> None:
    points, labels, _ = _clusters(4, 30, seed=7)
    # Label the most central point of clusters 0 and 1, so their balls cover most of those blobs.
    centre = [int(np.argmin(np.linalg.norm(points - points[labels == c].mean(0), axis=1))) for c in (0, 1)]
    rest = np.setdiff1d(np.arange(len(points)), centre)
    picks = select_covering(points[rest], 2, n_classes=4, labeled=points[centre], seed=0)
    assert sorted(labels[rest[picks]].tolist()) == [2, 3]


def test_full_coverage_fills_the_batch_at_random_and_bad_input_is_refused() -> None:
    points, _, _ = _clusters(2, 10, seed=8)
    picks = select_covering(points, 15, n_classes=2, delta=10.0, seed=3)  # one ball covers everything
    assert len(picks) == 15 == len(set(picks.tolist()))
    assert len(select_covering(points, 0, n_classes=2)) == 0
    with pytest.raises(ValueError, match="finite 2-D"):
        select_covering(points[:, 0], 2, n_classes=2)
    with pytest.raises(ValueError, match="dims"):
        select_covering(points, 2, n_classes=2, labeled=np.zeros((1, 3)))
    with pytest.raises(ValueError, match="n_classes"):
        select_batch("probcover", 2, n=len(points), cold_embeddings=points)


def test_plan_round_runs_probcover_over_pool_embeddings_then_covers_what_was_pushed() -> None:
    pool = _pool(60)
    ids = pool.column("record_id").to_pylist()
    points, labels, _ = _clusters(5, 12, seed=9)
    by_id = dict(zip(ids, labels.tolist(), strict=True))
    embeddings = _embedding_table(ids, points)
    plan = plan_round(pool, set(), 5, strategy="probcover", pool_embeddings=embeddings, n_classes=5)
    assert plan.strategy == "probcover" and plan.embeddings == "simclr-0001" and not plan.uses_model
    assert sorted(by_id[r] for r in plan.record_ids) == list(range(5))
    first_two = {rid for rid in plan.record_ids if by_id[rid] in (0, 1)}
    second = plan_next_batch(
        pool, first_two, {}, budget=3, strategy="probcover", pool_embeddings=embeddings, n_classes=5
    )
    assert sorted(by_id[r] for r in second.record_ids) == [2, 3, 4]
    pixels = plan_round(pool, set(), 4, strategy="probcover", n_classes=4)
    assert pixels.embeddings == "pixels" and len(set(pixels.record_ids)) == 4

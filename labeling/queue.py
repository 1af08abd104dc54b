"""The labeling queue's overlap plan: how many people must annotate each task before Label Studio stops serving it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping


def _rank(seed: int, record_id: str) -> str:
    # A hash, not the push order: which tasks get overlap must not follow priority (annotators would learn
    # that the top of the queue is double-checked) and must be the same on a rerun of the same round.
    return hashlib.sha256(f"{seed}:{record_id}".encode()).hexdigest()


def plan_task_overlaps(
    task_ids: Mapping[str, int],
    *,
    k: int,
    fraction: float,
    gold: Iterable[str],
    annotators: int,
    seed: int = 0,
) -> dict[int, int]:
    """task id -> how many distinct annotators Label Studio must collect for it (its `overlap`).

    `task_ids` maps the round's record ids to their task ids. Gold records get one annotation from every
    active annotator (`annotators`), so each person is scored on all of them. Of the other tasks,
    round(fraction * n) chosen by a seeded hash get `k` (capped at `annotators`: more could never be
    collected and the task would stay in the queue forever); the rest get 1.
    """
    if k < 1 or annotators < 1:
        raise ValueError(f"k and annotators must be >= 1, got k={k}, annotators={annotators}")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    gold_ids = set(gold)
    ordinary = sorted((rid for rid in task_ids if rid not in gold_ids), key=lambda rid: _rank(seed, rid))
    n_overlapped = round(fraction * len(ordinary)) if k > 1 else 0
    overlapped = set(ordinary[:n_overlapped])
    wide = min(k, annotators)
    out: dict[int, int] = {}
    for record_id, task_id in task_ids.items():
        if record_id in gold_ids:
            out[int(task_id)] = annotators
        else:
            out[int(task_id)] = wide if record_id in overlapped else 1
    return out


def overlaps_to_set(wanted: Mapping[int, int], current: Mapping[int, int]) -> dict[int, int]:
    """The part of `wanted` (task id -> overlap) that differs from what Label Studio holds (`current`):
    the only tasks worth a PATCH (~100 ms each)."""
    return {tid: n for tid, n in wanted.items() if current.get(tid) != n}

"""Splits: group-aware, stratified, stable assignment of records to train/val/test, and the leak check."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from typing import Any

import pyarrow as pa

from corpus.releases.config import ReleaseConfig
from corpus.schema import SPLITS


def group_records(records: pa.Table, by_page: bool = True) -> list[str]:
    """The split group of each row: rows sharing a `near_dup_cluster` or (with `by_page`) a `page_url` are
    joined, transitively (union-find), so a cluster spread over two pages pulls both pages together.

    A group is named after its smallest record_id, so the names do not depend on row order.
    """
    ids = records.column("record_id").to_pylist()
    parent = list(range(len(ids)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    keys = ["near_dup_cluster"] + (["page_url"] if by_page else [])
    for name in keys:
        if name not in records.column_names:
            continue
        first: dict[str, int] = {}
        for i, value in enumerate(records.column(name).to_pylist()):
            if value is None or value == "":
                continue
            if value in first:
                a, b = find(first[value]), find(i)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            else:
                first[value] = i
    smallest: dict[int, str] = {}
    for i, rid in enumerate(ids):
        r = find(i)
        if r not in smallest or rid < smallest[r]:
            smallest[r] = rid
    return [f"g:{smallest[find(i)]}" for i in range(len(ids))]


def _majority(values: list[str]) -> str:
    """Most common value; ties go to the smallest, so the result never depends on row order."""
    counts = Counter(values)
    best = max(counts.values())
    return min(v for v, n in counts.items() if n == best)


def assign_splits(records: pa.Table, cfg: ReleaseConfig, previous: dict[str, str] | None = None) -> pa.Array:
    """The split of each row of `records` (a string array aligned with the rows).

    Groups come from `group_records` (near-duplicate cluster + source page). A record that had a split
    in `previous` (record_id -> split, from the parent release) always keeps it; the new members of a
    group with old members join the old members' (majority) split. New groups, taken in the order of
    sha256(split_key + group), each go to the split furthest below its target share of the group's
    majority label, counting the rows of that label already assigned; so splits are stratified,
    deterministic, and adding data never moves an existing item. The one case a group can straddle
    splits is a new record joining groups that the parent put in different splits; `find_split_leaks`
    reports it, because moving a released item would be worse.
    """
    for name in ("record_id", "label"):
        if name not in records.column_names:
            raise ValueError(f"assign_splits needs a {name!r} column")
    previous = previous or {}
    bad = sorted({s for s in previous.values() if s not in SPLITS})
    if bad:
        raise ValueError(f"previous splits must be one of {list(SPLITS)}, got {bad}")
    ids = records.column("record_id").to_pylist()
    labels = ["" if x is None else x for x in records.column("label").to_pylist()]
    groups = group_records(records, cfg.group_by_page)

    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)

    fractions = cfg.fractions()
    counts: dict[str, Counter] = defaultdict(Counter)  # label -> split -> rows
    row_split: list[str | None] = [previous.get(r) for r in ids]
    fresh: list[str] = []
    for g, rows in members.items():
        kept = [row_split[i] for i in rows if row_split[i] is not None]
        if not kept:
            fresh.append(g)
            continue
        joined = _majority(kept)
        for i in rows:
            if row_split[i] is None:
                row_split[i] = joined
            counts[labels[i]][row_split[i]] += 1

    def order(g: str) -> str:
        return hashlib.sha256((cfg.split_key + g).encode()).hexdigest()

    for g in sorted(fresh, key=order):
        rows = members[g]
        label = _majority([labels[i] for i in rows])
        seen = counts[label]
        total = sum(seen.values()) + len(rows)
        # Deficit against the target after this group lands; ties go to SPLITS order (train first).
        deficits = {s: fractions[s] * total - seen[s] for s in SPLITS if fractions[s] > 0}
        best = max(deficits.values())
        split = next(s for s in SPLITS if s in deficits and deficits[s] == best)
        for i in rows:
            row_split[i] = split
            counts[labels[i]][split] += 1

    return pa.array(row_split, type=pa.string())


def find_split_leaks(records: pa.Table, splits: pa.Array | list[str], by_page: bool = True) -> list[dict[str, Any]]:
    """Groups (near-duplicate cluster / page) whose rows sit in more than one split, each with its reason.

    Returns [{"group", "splits": {split: rows}, "reason"}]; empty when no group straddles.
    """
    split_list = splits.to_pylist() if isinstance(splits, pa.Array | pa.ChunkedArray) else list(splits)
    per_group: dict[str, Counter] = defaultdict(Counter)
    for g, s in zip(group_records(records, by_page), split_list, strict=True):
        per_group[g][s] += 1
    return [
        {
            "group": g,
            "splits": dict(sorted(c.items())),
            "reason": "new records link groups the parent release put in different splits; "
            "released items never move, so this group straddles splits",
        }
        for g, c in sorted(per_group.items())
        if len(c) > 1
    ]

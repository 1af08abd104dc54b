"""Multi-label releases: the label list, per-label counts and the split strata of records that carry label sets.

A multi-label record's answer is its `labels` set (corpus.tasks ANSWER_COLUMN); its `label` holds the same set
joined by ";" in sorted order ("" for the empty set, "none of these"), so that what compares records by one
value (the content key, the diff since the parent, the eval set's counts) sees a changed set as a change.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pyarrow as pa

SET_SEPARATOR = ";"


def join_label_set(labels: Sequence[str] | None) -> str | None:
    """The one-string form of a label set (sorted, ";"-joined; "" for the empty set); None for no answer."""
    return None if labels is None else SET_SEPARATOR.join(sorted(labels))


def order_label_set_names(table: pa.Table) -> list[str]:
    """The label list models use, index -> name: the sorted union of the rows' `labels` sets."""
    return sorted({name for chosen in table.column("labels").to_pylist() for name in chosen or []})


def count_labels(table: pa.Table) -> dict[str, int]:
    """label -> rows carrying it (a row counts once for each label in its set)."""
    return dict(sorted(Counter(name for chosen in table.column("labels").to_pylist() for name in chosen or []).items()))


def stratum_keys(table: pa.Table) -> list[str]:
    """Each row's stratum for splitting: the rarest label of its set (by count over `table`; ties to the name
    that sorts first), "" for the empty set. Splitting on it keeps every label, rare ones first, near its
    target share in each split: the first step of iterative stratification (Sechidis, Tsoumakas & Vlahavas
    2011, "On the stratification of multi-label data"), which deals the rarest label out first."""
    counts = count_labels(table)
    return [
        min(chosen, key=lambda name: (counts[name], name)) if chosen else ""
        for chosen in table.column("labels").to_pylist()
    ]

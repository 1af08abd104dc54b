"""The fixed evaluation set: test items chosen once per dataset, kept by every later release, never trained on.

Every model of a dataset is scored on the same items, so "is v0003 better than v0002?" has an answer.
The set lives in each release manifest (covered by its digest and signature) and passes from parent to
child: a release keeps its parent's set and adds to it only while it is below its target size, and only
items of the test split, which never move to train or val (splits.assign_splits keeps released items where
they are). Once it reaches the target it is frozen: later test items stay test but do not join it.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from corpus.releases.splits import group_records

# The figures each task type is compared on, per version, on the eval set: (key in a model's eval scores,
# heading). One list, read by the model report (training) and the release card, so both show the same columns.
SCORE_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "classify": (("accuracy", "accuracy"), ("macro_f1", "macro F1")),
    "text": (("accuracy", "accuracy"), ("macro_f1", "macro F1")),
    "multilabel": (
        ("exact_match", "exact-set accuracy"),
        ("micro_f1", "micro F1"),
        ("macro_f1", "macro F1"),
        ("map", "mAP"),
    ),
    "detect": (("map_50", "mAP@0.5"), ("map_50_95", "mAP@[.5:.95]")),
}
# What "class_counts" counts, by the answer the records carry (eval_set["counted"]).
COUNTED_NOTES = {
    "items": "items per class",
    "labels": "items per label (an item counts once for each label in its set)",
    "boxes": "boxes per label",
}


def compute_eval_set_id(record_ids: list[str]) -> str:
    """ "sha256:<hex>" over the sorted record_ids: equal ids mean the very same items."""
    blob = "\n".join(sorted(record_ids)).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def parent_eval_ids(parent_manifest: dict[str, Any] | None, parent_test_ids: list[str]) -> list[str]:
    """The eval set a child release starts from: the parent's, or, for a parent built before eval sets
    existed, the parent's whole test split (never trained on, so it qualifies). Empty without a parent."""
    if parent_manifest is None:
        return []
    recorded = parent_manifest.get("eval_set")
    if recorded is not None:
        return list(recorded["record_ids"])
    return list(parent_test_ids)


def _ordered_test_groups(table: pa.Table, split_key: str, by_page: bool) -> list[list[int]]:
    """Row indices of the test split grouped as splits.group_records does, in keyed-hash order of the group."""
    splits = table.column("split").to_pylist()
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(group_records(table, by_page)):
        if splits[i] == "test":
            members[g].append(i)
    order = sorted(members, key=lambda g: hashlib.sha256((split_key + g).encode()).hexdigest())
    return [members[g] for g in order]


def count_answers(table: pa.Table, rows: list[int]) -> tuple[dict[str, int], str, int]:
    """(counts per label, what was counted, items with no answer) over `rows` of `table`: boxes per label for
    records that carry boxes (detect), items per label of their label sets (multilabel), else items per class.
    "No answer" is an image with no box or an empty label set ("none of these"); 0 for one class per item."""
    columns = table.column_names
    boxes = table.column("boxes").to_pylist() if "boxes" in columns else [None] * table.num_rows
    sets = table.column("labels").to_pylist() if "labels" in columns else [None] * table.num_rows
    if rows and all(boxes[i] is not None for i in rows):
        answers, counted = [[b["label"] for b in boxes[i]] for i in rows], "boxes"
    elif rows and all(sets[i] is not None for i in rows):
        answers, counted = [sorted(set(sets[i])) for i in rows], "labels"
    else:
        labels = table.column("label").to_pylist()
        answers, counted = [[labels[i]] for i in rows], "items"
    counts = Counter(name for answer in answers for name in answer)
    return dict(sorted(counts.items())), counted, sum(1 for answer in answers if not answer)


def choose_eval_set(
    table: pa.Table,
    inherited: list[str],
    *,
    target: int,
    version: str,
    since: str | None,
    split_key: str,
    by_page: bool = True,
) -> dict[str, Any]:
    """The eval set of a release: `inherited` ids still present, topped up from test rows while below `target`.

    `table` has the release's final "split" column. Inherited items that left the release (no longer in
    the records) leave the set; that is recorded in "removed". New items join whole groups at a time
    (near-duplicates and page mates together), in the keyed-hash order of their group, so the choice is
    deterministic, and stop once the set reaches `target`. Returns {"id", "record_ids" (sorted), "size",
    "target", "since" (the version that started it), "frozen" (reached the target: grows no more),
    "added", "removed", "class_counts", "counted", "no_answer"} (count_answers: per class, per label over the
    label sets, or boxes per label).
    """
    ids = table.column("record_id").to_pylist()
    splits = table.column("split").to_pylist()
    present = {rid: i for i, rid in enumerate(ids)}
    kept = [rid for rid in inherited if rid in present]
    moved = [rid for rid in kept if splits[present[rid]] != "test"]
    if moved:
        # assign_splits never moves a released item, so this is a bug upstream, not a data problem.
        raise ValueError(f"{len(moved)} eval-set items are no longer in test, e.g. {moved[:3]}")
    chosen = set(kept)
    added = 0
    for rows in _ordered_test_groups(table, split_key, by_page):
        if len(chosen) >= target:
            break
        fresh = [ids[i] for i in rows if ids[i] not in chosen]
        chosen.update(fresh)
        added += len(fresh)
    record_ids = sorted(chosen)
    class_counts, counted, no_answer = count_answers(table, [present[r] for r in record_ids])
    return {
        "id": compute_eval_set_id(record_ids),
        "record_ids": record_ids,
        "size": len(record_ids),
        "target": target,
        "since": since or version,
        "frozen": len(record_ids) >= target,
        "added": added,
        "removed": len(inherited) - len(kept),
        "class_counts": class_counts,
        "counted": counted,
        "no_answer": no_answer,
    }


def eval_set_note(eval_set: dict[str, Any]) -> str:
    """One sentence on the set's state: frozen, or still growing and why it is below its target."""
    if eval_set["frozen"]:
        return (
            f"frozen at {eval_set['size']} items since it reached its target of {eval_set['target']}; "
            "every model of this dataset is compared on exactly these items"
        )
    return (
        f"{eval_set['size']} of a target {eval_set['target']} items: the labeled test items so far; it grows "
        "with new test items until it reaches the target, and earlier models are re-scored on it, so the "
        "comparison per version is always on the same items"
    )


def select_eval_rows(table: pa.Table, eval_set: dict[str, Any] | None) -> pa.Table:
    """The rows of `table` that are in `eval_set` (none when there is no eval set)."""
    if not eval_set:
        return table.slice(0, 0)
    return table.filter(pc.is_in(table.column("record_id"), pa.array(eval_set["record_ids"], pa.string())))

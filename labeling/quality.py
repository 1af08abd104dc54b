"""Label quality: majority-vote aggregation of human annotations and inter-annotator agreement."""

from __future__ import annotations

from collections import Counter, defaultdict
from itertools import combinations

import pyarrow as pa
import pyarrow.compute as pc

from corpus.schema import ANNOTATION_SCHEMA

AGGREGATE_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("label", pa.string()),
        pa.field("label_confidence", pa.float32()),
        pa.field("annotators", pa.list_(pa.string())),
        pa.field("n_annotations", pa.int32()),
    ]
)


def latest_versions(annotations: pa.Table) -> pa.Table:
    """The newest row of each annotation_id (by updated_at, then pulled_at; later rows win ties)."""
    missing = [name for name in ANNOTATION_SCHEMA.names if name not in annotations.column_names]
    if missing:
        raise ValueError(f"annotations lack columns {missing}; expected ANNOTATION_SCHEMA")
    if annotations.num_rows == 0:
        return annotations
    indexed = annotations.append_column("_row", pa.array(range(annotations.num_rows), pa.int64()))
    order = indexed.sort_by(
        [("annotation_id", "ascending"), ("updated_at", "ascending"), ("pulled_at", "ascending"), ("_row", "ascending")]
    )
    ids = order.column("annotation_id").to_pylist()
    keep = [i for i in range(len(ids)) if i == len(ids) - 1 or ids[i + 1] != ids[i]]
    return order.take(pa.array(keep, pa.int64())).drop_columns(["_row"])


def _votes(annotations: pa.Table) -> dict[str, dict[str, str]]:
    """record_id -> {annotator -> label}: live annotations only, one vote per annotator (their newest)."""
    live = latest_versions(annotations)
    if live.num_rows:
        dead = pc.or_kleene(
            pc.fill_null(live.column("deleted"), False), pc.fill_null(live.column("was_cancelled"), False)
        )
        live = live.filter(pc.and_(pc.invert(dead), pc.is_valid(live.column("label"))))
    live = live.sort_by([("updated_at", "ascending"), ("annotation_id", "ascending")])
    votes: dict[str, dict[str, str]] = defaultdict(dict)
    for record_id, annotator, label, annotation_id in zip(
        live.column("record_id").to_pylist(),
        live.column("annotator").to_pylist(),
        live.column("label").to_pylist(),
        live.column("annotation_id").to_pylist(),
        strict=True,
    ):
        # An unknown annotator counts as its own voter, so it is never merged with another.
        votes[record_id][annotator if annotator is not None else f"#annotation-{annotation_id}"] = label
    return votes


def aggregate_majority(annotations: pa.Table) -> pa.Table:
    """One row per record: the majority label, its vote share (label_confidence), who voted, how many.

    Uses the newest version of each annotation, drops deleted and cancelled ones, and counts one
    vote per annotator per record (their newest). Ties go to the label that sorts first, so the
    result is deterministic; label_confidence shows the tie (e.g. 0.5). Low confidence = doubtful.
    """
    votes = _votes(annotations)
    rows: dict[str, list] = {name: [] for name in AGGREGATE_SCHEMA.names}
    for record_id in sorted(votes):
        by_annotator = votes[record_id]
        counts = Counter(by_annotator.values())
        label, top = min(counts.items(), key=lambda item: (-item[1], item[0]))
        rows["record_id"].append(record_id)
        rows["label"].append(label)
        rows["label_confidence"].append(top / len(by_annotator))
        rows["annotators"].append(sorted(by_annotator))
        rows["n_annotations"].append(len(by_annotator))
    return pa.table(rows, schema=AGGREGATE_SCHEMA)


def compute_agreement(annotations: pa.Table) -> dict:
    """Inter-annotator agreement over records with 2+ live votes.

    Returns {"items_with_overlap", "percent_agreement" (pairwise, in [0, 1]), "cohen_kappa" (Cohen 1960,
    per pair of annotators over the records both labeled, averaged weighted by shared records),
    "fleiss_kappa" (Fleiss 1971, over records with the most common number of raters)}. Agreement values
    are None when no record has overlap; 1 = perfect agreement, low (or negative kappa) = annotators disagree.
    """
    votes = _votes(annotations)
    result_kappa = _mean_cohen_kappa(votes)
    overlapping = {rid: list(v.values()) for rid, v in votes.items() if len(v) >= 2}
    result: dict = {
        "items_with_overlap": len(overlapping),
        "percent_agreement": None,
        "cohen_kappa": None,
        "fleiss_kappa": None,
    }
    if not overlapping:
        return result
    agree = pairs = 0
    for labels in overlapping.values():
        for a, b in combinations(labels, 2):
            pairs += 1
            agree += a == b
    result["percent_agreement"] = agree / pairs
    result["cohen_kappa"] = result_kappa
    result["fleiss_kappa"] = _fleiss_kappa(list(overlapping.values()))
    return result


def _kappa(first: list[str], second: list[str]) -> float:
    n = len(first)
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    count_a, count_b = Counter(first), Counter(second)
    expected = sum(count_a[c] * count_b[c] for c in count_a) / (n * n)
    # Both raters used one and the same class throughout: chance agreement is total, call it perfect.
    return 1.0 if expected >= 1.0 else (observed - expected) / (1.0 - expected)


def _mean_cohen_kappa(votes: dict[str, dict[str, str]]) -> float | None:
    shared: dict[tuple[str, str], tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    for by_annotator in votes.values():
        for a, b in combinations(sorted(by_annotator), 2):
            shared[(a, b)][0].append(by_annotator[a])
            shared[(a, b)][1].append(by_annotator[b])
    weighted = [(_kappa(first, second), len(first)) for first, second in shared.values()]
    total = sum(n for _, n in weighted)
    return sum(k * n for k, n in weighted) / total if total else None


def _fleiss_kappa(items: list[list[str]]) -> float | None:
    # Fleiss' kappa needs the same number of raters per item: use the most common count.
    n_raters = Counter(len(labels) for labels in items).most_common(1)[0][0]
    items = [labels for labels in items if len(labels) == n_raters]
    categories = sorted({label for labels in items for label in labels})
    n_items = len(items)
    counts = [[labels.count(c) for c in categories] for labels in items]
    p_j = [sum(row[j] for row in counts) / (n_items * n_raters) for j in range(len(categories))]
    p_i = [(sum(x * x for x in row) - n_raters) / (n_raters * (n_raters - 1)) for row in counts]
    p_bar = sum(p_i) / n_items
    p_e = sum(p * p for p in p_j)
    if p_e >= 1.0:
        return 1.0
    return (p_bar - p_e) / (1.0 - p_e)

"""Label quality: majority vote and Dawid-Skene, agreement (kappas, Krippendorff's alpha), gold, review, scorecards."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from itertools import combinations
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from corpus.schema import ANNOTATION_SCHEMA

# Items whose aggregated label has a posterior (or vote share) below this go to human review. Measured in
# bench/aggregation.py (2026-11-23, 5 seeds, 6 simulated annotators incl. an adversary): Dawid-Skene labels at or
# above 0.8 were 97.9% right, those below 65%, and ~14% of items fell below; a parameter of find_review_items.
REVIEW_CONFIDENCE = 0.8
# Dawid & Skene 1979 EM: crowd-kit's defaults (100 iterations, tolerance 1e-5) converge on every bench run.
DS_ITERATIONS = 100

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


def live_votes(annotations: pa.Table) -> dict[str, dict[str, str]]:
    """record_id -> {annotator -> label}: the live votes aggregation counts (each annotator's newest)."""
    return _votes(annotations)


def live_answers(annotations: pa.Table, column: str = "label") -> dict[str, dict[str, Any]]:
    """record_id -> {annotator -> their answer in `column`}: live annotations only (not deleted, not cancelled,
    with a value in `column`), one answer per annotator (their newest)."""
    live = latest_versions(annotations)
    if live.num_rows:
        dead = pc.or_kleene(
            pc.fill_null(live.column("deleted"), False), pc.fill_null(live.column("was_cancelled"), False)
        )
        live = live.filter(pc.and_(pc.invert(dead), pc.is_valid(live.column(column))))
    live = live.sort_by([("updated_at", "ascending"), ("annotation_id", "ascending")])
    answers: dict[str, dict[str, Any]] = defaultdict(dict)
    for record_id, annotator, answer, annotation_id in zip(
        live.column("record_id").to_pylist(),
        live.column("annotator").to_pylist(),
        live.column(column).to_pylist(),
        live.column("annotation_id").to_pylist(),
        strict=True,
    ):
        # An unknown annotator counts as its own voter, so it is never merged with another.
        answers[record_id][annotator if annotator is not None else f"#annotation-{annotation_id}"] = answer
    return answers


def _votes(annotations: pa.Table) -> dict[str, dict[str, str]]:
    """record_id -> {annotator -> label}: live annotations only, one vote per annotator (their newest)."""
    return live_answers(annotations, "label")


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
    "fleiss_kappa" (Fleiss 1971, over records with the most common number of raters), "krippendorff_alpha"
    (nominal, Krippendorff 2011; any number of raters per record)}. Agreement values
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
        "krippendorff_alpha": None,
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
    result["krippendorff_alpha"] = compute_krippendorff_alpha(list(overlapping.values()))
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


def compute_krippendorff_alpha(units: list[list[str]]) -> float | None:
    """Krippendorff's alpha for nominal data over `units` (each the labels its raters gave; missing ones left out).

    Follows Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": a coincidence matrix over
    pairable values (units with 2+ labels), alpha = 1 - D_o / D_e. 1 = perfect agreement, 0 = chance,
    negative = systematic disagreement. None when fewer than two pairable values exist; 1.0 when every
    pairable value is the same class (no disagreement is possible, as in _kappa).
    """
    coincidence: dict[tuple[str, str], float] = defaultdict(float)
    for labels in units:
        m = len(labels)
        if m < 2:
            continue
        for i, a in enumerate(labels):
            for j, b in enumerate(labels):
                if i != j:
                    coincidence[(a, b)] += 1.0 / (m - 1)
    n_c: dict[str, float] = defaultdict(float)
    for (a, _), value in coincidence.items():
        n_c[a] += value
    n = sum(n_c.values())
    if n < 2:
        return None
    observed = sum(value for (a, b), value in coincidence.items() if a != b)
    expected_pairs = n * n - sum(v * v for v in n_c.values())
    if expected_pairs == 0:
        return 1.0
    return 1.0 - (n - 1) * observed / expected_pairs


PAIR_SCHEMA = pa.schema(
    [
        pa.field("annotator_a", pa.string()),
        pa.field("annotator_b", pa.string()),
        pa.field("shared_items", pa.int32()),
        pa.field("percent_agreement", pa.float64()),
        pa.field("cohen_kappa", pa.float64()),
        pa.field("krippendorff_alpha", pa.float64()),
    ]
)


def compute_pairwise_agreement(annotations: pa.Table) -> pa.Table:
    """Agreement per pair of annotators over the records both labeled (PAIR_SCHEMA); low = the pair disagrees.

    A pair with an adversarial or careless member stands out with a low (or negative) kappa and alpha.
    """
    votes = _votes(annotations)
    shared: dict[tuple[str, str], tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    for by_annotator in votes.values():
        for a, b in combinations(sorted(by_annotator), 2):
            shared[(a, b)][0].append(by_annotator[a])
            shared[(a, b)][1].append(by_annotator[b])
    rows = []
    for (a, b), (first, second) in sorted(shared.items()):
        rows.append(
            {
                "annotator_a": a,
                "annotator_b": b,
                "shared_items": len(first),
                "percent_agreement": sum(x == y for x, y in zip(first, second, strict=True)) / len(first),
                "cohen_kappa": _kappa(first, second),
                "krippendorff_alpha": compute_krippendorff_alpha([[x, y] for x, y in zip(first, second, strict=True)]),
            }
        )
    return pa.Table.from_pylist(rows, schema=PAIR_SCHEMA)


def _fit_dawid_skene(annotations: pa.Table, gold: dict[str, str] | None, n_iter: int):
    # crowd-kit pulls in heavy imports (pandas and more); load it only when Dawid-Skene is asked for.
    import pandas as pd
    from crowdkit.aggregation import DawidSkene

    votes = _votes(annotations)
    rows = [(rid, annotator, label) for rid, by in votes.items() for annotator, label in by.items()]
    if not rows:
        return None, votes
    frame = pd.DataFrame(rows, columns=["task", "worker", "label"])
    true_labels = None
    if gold:
        known = {rid: label for rid, label in gold.items() if rid in votes}
        true_labels = pd.Series(known, dtype=object) if known else None
    return DawidSkene(n_iter=n_iter).fit(frame, true_labels=true_labels), votes


def aggregate_dawid_skene(
    annotations: pa.Table, *, gold: dict[str, str] | None = None, n_iter: int = DS_ITERATIONS
) -> pa.Table:
    """One row per record (AGGREGATE_SCHEMA): the Dawid-Skene label and its posterior as label_confidence.

    Dawid & Skene (1979) via crowd-kit: EM over one confusion matrix per annotator, so a careless
    annotator is down-weighted and an adversarial one (who systematically swaps classes) is even
    inverted. `gold` (record_id -> known label) pins those records' classes during EM. Uses the same
    live votes as aggregate_majority; a posterior near 1 = sure, low = doubtful (send to review).
    """
    model, votes = _fit_dawid_skene(annotations, gold, n_iter)
    rows: dict[str, list] = {name: [] for name in AGGREGATE_SCHEMA.names}
    if model is None:
        return pa.table(rows, schema=AGGREGATE_SCHEMA)
    probas = model.probas_
    classes = [str(c) for c in probas.columns]
    matrix = probas.to_numpy(dtype=np.float64)
    index = {str(t): i for i, t in enumerate(probas.index)}
    for record_id in sorted(votes):
        row = matrix[index[record_id]]
        best = int(np.argmax(row))
        rows["record_id"].append(record_id)
        rows["label"].append(classes[best])
        rows["label_confidence"].append(float(row[best] / row.sum()))
        rows["annotators"].append(sorted(votes[record_id]))
        rows["n_annotations"].append(len(votes[record_id]))
    return pa.table(rows, schema=AGGREGATE_SCHEMA)


def estimate_annotator_accuracy(
    annotations: pa.Table, *, gold: dict[str, str] | None = None, n_iter: int = DS_ITERATIONS
) -> dict[str, float]:
    """annotator -> accuracy in [0, 1] estimated by Dawid-Skene (prior-weighted diagonal of their confusion).

    Needs no gold: useful where gold items are few. Low = an unreliable (or adversarial) annotator.
    """
    model, _ = _fit_dawid_skene(annotations, gold, n_iter)
    if model is None:
        return {}
    errors = model.errors_  # index (worker, observed label), columns true label: P(observed | true)
    priors = model.priors_
    out: dict[str, float] = {}
    for worker in sorted({str(w) for w in errors.index.get_level_values(0)}):
        block = errors.xs(worker, level=0)
        out[worker] = float(sum(priors[c] * block.at[c, c] for c in priors.index if c in block.index))
    return out


def score_gold(annotations: pa.Table, gold: dict[str, str]) -> dict[str, dict]:
    """annotator -> {"gold_items", "gold_correct", "gold_accuracy" (in [0, 1]; low = unreliable)} on gold records.

    `gold` maps record_id -> known label; only each annotator's live, newest vote counts.
    """
    out: dict[str, dict] = {}
    for record_id, by_annotator in _votes(annotations).items():
        if record_id not in gold:
            continue
        for annotator, label in by_annotator.items():
            entry = out.setdefault(annotator, {"gold_items": 0, "gold_correct": 0})
            entry["gold_items"] += 1
            entry["gold_correct"] += label == gold[record_id]
    for entry in out.values():
        entry["gold_accuracy"] = entry["gold_correct"] / entry["gold_items"]
    return out


REVIEW_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("label", pa.string()),
        pa.field("label_confidence", pa.float32()),
        pa.field("reason", pa.string()),
    ]
)


def find_review_items(
    aggregated: pa.Table, *, threshold: float = REVIEW_CONFIDENCE, gold: dict[str, str] | None = None
) -> pa.Table:
    """Records to send to human review (REVIEW_SCHEMA), least confident first, each with a reason.

    Reasons: "low_confidence" (label_confidence below `threshold`; see REVIEW_CONFIDENCE) and
    "gold_mismatch" (a gold record whose aggregated label is not its known answer).
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1]; got {threshold}")
    rows = []
    for row in aggregated.select(["record_id", "label", "label_confidence"]).to_pylist():
        confidence = row["label_confidence"]
        if gold and row["record_id"] in gold and gold[row["record_id"]] != row["label"]:
            rows.append({**row, "reason": "gold_mismatch"})
        elif confidence is None or confidence < threshold:
            rows.append({**row, "reason": "low_confidence"})
    rows.sort(key=lambda r: (r["label_confidence"] if r["label_confidence"] is not None else -1.0, r["record_id"]))
    return pa.Table.from_pylist(rows, schema=REVIEW_SCHEMA)


SCORECARD_SCHEMA = pa.schema(
    [
        pa.field("annotator", pa.string()),
        pa.field("annotations", pa.int32()),
        pa.field("gold_items", pa.int32()),
        pa.field("gold_accuracy", pa.float64()),
        pa.field("consensus_items", pa.int32()),
        pa.field("consensus_agreement", pa.float64()),
        pa.field("median_lead_time_s", pa.float64()),
        pa.field("annotations_per_hour", pa.float64()),
    ]
)


def build_scorecards(annotations: pa.Table, consensus: pa.Table, gold: dict[str, str] | None = None) -> pa.Table:
    """One row per annotator (SCORECARD_SCHEMA): volume, accuracy on gold, agreement with consensus, speed.

    `consensus` is an aggregate table (aggregate_majority or aggregate_dawid_skene); agreement with it
    counts only records someone else also labeled, so a lone vote never agrees with itself. Accuracies
    are in [0, 1], low = unreliable; annotations_per_hour is 3600 x annotations / total lead time.
    Null where there is nothing to measure (no gold seen, no overlap, no lead times).
    """
    votes = _votes(annotations)
    consensus_label = dict(
        zip(consensus.column("record_id").to_pylist(), consensus.column("label").to_pylist(), strict=True)
    )
    gold_scores = score_gold(annotations, gold or {})
    live = latest_versions(annotations)
    lead_times: dict[str, list[float]] = defaultdict(list)
    if live.num_rows:
        alive = pc.invert(pc.fill_null(live.column("deleted"), False))
        for annotator, lead in zip(
            live.filter(alive).column("annotator").to_pylist(),
            live.filter(alive).column("lead_time").to_pylist(),
            strict=True,
        ):
            if annotator is not None and lead is not None and math.isfinite(lead):
                lead_times[annotator].append(float(lead))
    per: dict[str, dict] = defaultdict(lambda: {"annotations": 0, "consensus_items": 0, "consensus_agree": 0})
    for record_id, by_annotator in votes.items():
        for annotator, label in by_annotator.items():
            entry = per[annotator]
            entry["annotations"] += 1
            if len(by_annotator) >= 2 and record_id in consensus_label:
                entry["consensus_items"] += 1
                entry["consensus_agree"] += label == consensus_label[record_id]
    rows = []
    for annotator in sorted(per):
        entry = per[annotator]
        gold_entry = gold_scores.get(annotator)
        leads = lead_times.get(annotator, [])
        rows.append(
            {
                "annotator": annotator,
                "annotations": entry["annotations"],
                "gold_items": gold_entry["gold_items"] if gold_entry else 0,
                "gold_accuracy": gold_entry["gold_accuracy"] if gold_entry else None,
                "consensus_items": entry["consensus_items"],
                "consensus_agreement": (
                    entry["consensus_agree"] / entry["consensus_items"] if entry["consensus_items"] else None
                ),
                "median_lead_time_s": float(np.median(leads)) if leads else None,
                "annotations_per_hour": 3600.0 * len(leads) / sum(leads) if leads and sum(leads) > 0 else None,
            }
        )
    return pa.Table.from_pylist(rows, schema=SCORECARD_SCHEMA)

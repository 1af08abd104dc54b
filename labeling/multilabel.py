"""Multi-label answers: annotators' label sets, per-label Dawid-Skene aggregation and per-label agreement."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np
import pyarrow as pa

from corpus.releases.multilabel import join_label_set
from labeling.quality import DS_ITERATIONS, compute_krippendorff_alpha, live_answers

PRESENT, ABSENT = "present", "absent"
# A label is in a record's aggregated set when its posterior of being present is at least this: the Bayes
# decision for a binary question with equal costs.
PRESENCE_THRESHOLD = 0.5

POSTERIOR_TYPE = pa.list_(pa.struct([pa.field("label", pa.string()), pa.field("posterior", pa.float32())]))
MULTILABEL_AGGREGATE_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("labels", pa.list_(pa.string())),
        # the least sure label's decision: min over labels of max(p, 1 - p); low = doubtful
        pa.field("label_confidence", pa.float32()),
        pa.field("posteriors", POSTERIOR_TYPE),  # per label: P(present)
        pa.field("annotators", pa.list_(pa.string())),
        pa.field("n_annotations", pa.int32()),
    ]
)


def live_label_sets(annotations: pa.Table) -> dict[str, dict[str, frozenset[str]]]:
    """record_id -> {annotator -> the set of labels they chose}: live annotations only (not deleted, not
    cancelled, with a `labels` value), one answer per annotator (their newest). An empty set is an answer:
    "none of these"."""
    answers = live_answers(annotations, "labels")
    return {rid: {who: frozenset(chosen) for who, chosen in by.items()} for rid, by in answers.items()}


def label_names_of(sets: Mapping[str, Mapping[str, frozenset[str]]], extra: Sequence[str] = ()) -> list[str]:
    """Every label anyone chose (plus `extra`, e.g. the round's label list), sorted."""
    return sorted({label for by in sets.values() for chosen in by.values() for label in chosen} | set(extra))


def _fit_label(
    sets: Mapping[str, Mapping[str, frozenset[str]]], label: str, gold: Mapping[str, frozenset[str]], n_iter: int
) -> dict[str, float]:
    """record_id -> P(label present): Dawid-Skene over the binary question "is `label` in the image?"."""
    import pandas as pd
    from crowdkit.aggregation import DawidSkene

    rows = [
        (rid, annotator, PRESENT if label in chosen else ABSENT)
        for rid, by in sets.items()
        for annotator, chosen in by.items()
    ]
    frame = pd.DataFrame(rows, columns=["task", "worker", "label"])
    known = {rid: PRESENT if label in answer else ABSENT for rid, answer in gold.items() if rid in sets}
    true_labels = pd.Series(known, dtype=object) if known else None
    probas = DawidSkene(n_iter=n_iter).fit(frame, true_labels=true_labels).probas_
    # A label every vote calls absent (or present) leaves crowd-kit with a single column.
    present = probas[PRESENT] if PRESENT in probas.columns else pd.Series(0.0, index=probas.index)
    total = probas.sum(axis=1)
    return {str(rid): float(present[rid] / total[rid]) for rid in probas.index}


def aggregate_multilabel(
    annotations: pa.Table,
    *,
    labels: Sequence[str] = (),
    gold: Mapping[str, Sequence[str]] | None = None,
    n_iter: int = DS_ITERATIONS,
) -> pa.Table:
    """One row per record (MULTILABEL_AGGREGATE_SCHEMA): its label set and each label's posterior.

    Each label is its own binary question (present / absent) answered by every annotator who saw the item,
    aggregated by Dawid & Skene (1979) via crowd-kit's DawidSkene, so an annotator careless about one label
    is down-weighted for that label only (per-label decomposition, as in Zhang & Wu 2018, "Multi-label
    truth inference for crowdsourcing using mixture models", its binary-relevance baseline). A label is in
    the set when its posterior is >= PRESENCE_THRESHOLD. `labels` adds labels nobody chose (their posterior
    is then 0); `gold` (record_id -> known set) pins those records during EM.
    """
    sets = live_label_sets(annotations)
    rows: dict[str, list] = {name: [] for name in MULTILABEL_AGGREGATE_SCHEMA.names}
    if not sets:
        return pa.table(rows, schema=MULTILABEL_AGGREGATE_SCHEMA)
    names = label_names_of(sets, labels)
    gold_sets = {rid: frozenset(answer) for rid, answer in (gold or {}).items()}
    chosen_somewhere = label_names_of(sets)
    posterior = {name: _fit_label(sets, name, gold_sets, n_iter) if name in chosen_somewhere else {} for name in names}
    for record_id in sorted(sets):
        probs = [posterior[name].get(record_id, 0.0) for name in names]
        rows["record_id"].append(record_id)
        rows["labels"].append([n for n, p in zip(names, probs, strict=True) if p >= PRESENCE_THRESHOLD])
        rows["label_confidence"].append(min(max(p, 1.0 - p) for p in probs))
        rows["posteriors"].append([{"label": n, "posterior": p} for n, p in zip(names, probs, strict=True)])
        rows["annotators"].append(sorted(sets[record_id]))
        rows["n_annotations"].append(len(sets[record_id]))
    return pa.table(rows, schema=MULTILABEL_AGGREGATE_SCHEMA)


def compute_label_agreement(annotations: pa.Table, *, labels: Sequence[str] = ()) -> dict:
    """Agreement over records with 2+ live answers, per label and overall.

    Returns {"items_with_overlap", "percent_agreement" (pairs of annotators giving the very same set, in
    [0, 1]), "per_label" (label -> Krippendorff's alpha of the binary present/absent question, Krippendorff
    2011; None for a label nobody chose on an overlapping item: nothing to agree on), "krippendorff_alpha"
    (mean of the measured per-label alphas: what the round's gate checks)}. 1 = perfect agreement, 0 = chance.
    """
    sets = live_label_sets(annotations)
    overlapping = {rid: by for rid, by in sets.items() if len(by) >= 2}
    names = label_names_of(overlapping, labels)
    result: dict = {"items_with_overlap": len(overlapping), "percent_agreement": None, "per_label": {}}
    per_label: dict[str, float | None] = {}
    for name in names:
        units = [[PRESENT if name in chosen else ABSENT for chosen in by.values()] for by in overlapping.values()]
        seen_present = any(PRESENT in unit for unit in units)
        per_label[name] = compute_krippendorff_alpha(units) if seen_present else None
    result["per_label"] = per_label
    measured = [a for a in per_label.values() if a is not None]
    result["krippendorff_alpha"] = float(np.mean(measured)) if measured else None
    pairs = [(a, b) for by in overlapping.values() for a, b in combinations(by.values(), 2)]
    if pairs:
        result["percent_agreement"] = sum(a == b for a, b in pairs) / len(pairs)
    return result


def compute_set_f1(answer: frozenset[str] | set[str], truth: frozenset[str] | set[str]) -> float:
    """F1 of one answered label set against the true set, in [0, 1] (low = wrong); two empty sets agree (1)."""
    if not answer and not truth:
        return 1.0
    hits = len(set(answer) & set(truth))
    return 2.0 * hits / (len(answer) + len(truth))


def score_label_gold(annotations: pa.Table, gold: Mapping[str, Sequence[str]]) -> dict[str, dict]:
    """annotator -> {"gold_items", "gold_correct" (exact sets), "gold_accuracy" (mean set F1 over their gold
    answers, in [0, 1]; low = unreliable), "per_label" (label -> F1 of their present/absent answers)}."""
    out: dict[str, dict] = {}
    counts: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0]))  # tp, fp, fn
    for record_id, by in live_label_sets(annotations).items():
        if record_id not in gold:
            continue
        truth = frozenset(gold[record_id])
        for annotator, chosen in by.items():
            entry = out.setdefault(annotator, {"gold_items": 0, "gold_correct": 0, "f1": 0.0})
            entry["gold_items"] += 1
            entry["gold_correct"] += chosen == truth
            entry["f1"] += compute_set_f1(chosen, truth)
            for name in chosen | truth:
                tally = counts[annotator][name]
                tally[0 if name in chosen and name in truth else 1 if name in chosen else 2] += 1
    for annotator, entry in out.items():
        entry["gold_accuracy"] = entry.pop("f1") / entry["gold_items"]
        entry["per_label"] = {
            name: 2 * tp / (2 * tp + fp + fn) for name, (tp, fp, fn) in sorted(counts[annotator].items())
        }
    return out


def build_label_scorecards(
    annotations: pa.Table, consensus: pa.Table, gold: Mapping[str, Sequence[str]] | None = None
) -> pa.Table:
    """One row per annotator in labeling.quality's SCORECARD_SCHEMA, for label sets: gold_accuracy is the mean
    set F1 on gold tasks, consensus_agreement the mean set F1 against the Dawid-Skene sets of `consensus`
    (aggregate_multilabel) over records someone else also answered. In [0, 1], low = unreliable."""
    from labeling.quality import SCORECARD_SCHEMA, build_scorecards

    # Speed and volume are the same as for one label: reuse them, then overwrite the two accuracy columns.
    base = {
        row["annotator"]: row
        for row in build_scorecards(
            _as_single_choice(annotations), pa.table({"record_id": [], "label": []})
        ).to_pylist()
    }
    consensus_sets = {
        rid: frozenset(labels)
        for rid, labels in zip(
            consensus.column("record_id").to_pylist(), consensus.column("labels").to_pylist(), strict=True
        )
    }
    gold_scores = score_label_gold(annotations, gold or {})
    agree: dict[str, list[float]] = defaultdict(list)
    for record_id, by in live_label_sets(annotations).items():
        if len(by) < 2 or record_id not in consensus_sets:
            continue
        for annotator, chosen in by.items():
            agree[annotator].append(compute_set_f1(chosen, consensus_sets[record_id]))
    rows = []
    for annotator in sorted(base):
        scores = gold_scores.get(annotator)
        rows.append(
            {
                **base[annotator],
                "gold_items": scores["gold_items"] if scores else 0,
                "gold_accuracy": scores["gold_accuracy"] if scores else None,
                "consensus_items": len(agree.get(annotator, [])),
                "consensus_agreement": float(np.mean(agree[annotator])) if agree.get(annotator) else None,
            }
        )
    return pa.Table.from_pylist(rows, schema=SCORECARD_SCHEMA)


def _as_single_choice(annotations: pa.Table) -> pa.Table:
    """The annotations with `label` set to their joined label set, so single-choice counting applies."""
    joined = [None if v is None else ";".join(sorted(v)) for v in annotations.column("labels").to_pylist()]
    return annotations.set_column(annotations.schema.get_field_index("label"), "label", pa.array(joined, pa.string()))


def attach_label_sets(records: pa.Table, aggregated: pa.Table) -> pa.Table:
    """Records that have an aggregated label set (aggregate_multilabel), with labels, label (the set joined by
    ";", corpus.releases.multilabel), label_source (`human` from one annotator, `consensus` from several),
    label_confidence (the least sure label's decision) and annotators set."""
    by_id = {row["record_id"]: row for row in aggregated.to_pylist()}
    keep = pa.array([rid in by_id for rid in records.column("record_id").to_pylist()], pa.bool_())
    labeled = records.filter(keep)
    rows = [by_id[rid] for rid in labeled.column("record_id").to_pylist()]
    columns = {
        "labels": pa.array([r["labels"] for r in rows], pa.list_(pa.string())),
        "label": pa.array([join_label_set(r["labels"]) for r in rows], pa.string()),
        "label_source": pa.array(["consensus" if r["n_annotations"] > 1 else "human" for r in rows], pa.string()),
        "label_confidence": pa.array([r["label_confidence"] for r in rows], pa.float32()),
        "annotators": pa.array([r["annotators"] for r in rows], pa.list_(pa.string())),
    }
    for name, values in columns.items():
        if name in labeled.column_names:
            labeled = labeled.set_column(labeled.schema.get_field_index(name), name, values)
        else:
            labeled = labeled.append_column(name, values)
    return labeled


def apply_trusted_label_sets(labeled: pa.Table, annotations: pa.Table, trusted: Sequence[str]) -> pa.Table:
    """`labeled` (attach_label_sets' rows) with the newest live set of a trusted origin (the first of `trusted`
    that answered) in place of the aggregated one: label_source the origin, confidence 1, as a classify release
    takes a trusted label (labeling.rounds.attach_labels)."""
    answers = live_answers(annotations, "labels") if trusted else {}
    chosen: dict[str, tuple[list[str], str]] = {}
    for rid, by in answers.items():
        origin = next((o for o in trusted if o in by), None)
        if origin is not None:
            chosen[rid] = (sorted(by[origin]), origin)
    if not chosen:
        return labeled
    ids = labeled.column("record_id").to_pylist()
    names = ("labels", "label", "label_source", "label_confidence")
    columns = {name: labeled.column(name).to_pylist() for name in names}
    for k, rid in enumerate(ids):
        if rid in chosen:
            sets, origin = chosen[rid]
            columns["labels"][k], columns["label"][k] = sets, join_label_set(sets)
            columns["label_source"][k], columns["label_confidence"][k] = origin, 1.0
    for name, values in columns.items():
        at = labeled.schema.get_field_index(name)
        labeled = labeled.set_column(at, name, pa.array(values, labeled.schema.field(name).type))
    return labeled

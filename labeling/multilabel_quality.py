"""Multi-label review and selection: doubtful labels per record, per-label label-error flags, per-label uncertainty."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa

from labeling.quality import REVIEW_CONFIDENCE
from labeling.review import GOLD_MISMATCH, LIKELY_MISLABELED, LOW_CONFIDENCE, REVIEW_SET_SCHEMA

LABEL_FLAG_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("label", pa.string()),
        pa.field("given", pa.bool_()),  # is the label in the record's aggregated set
        pa.field("probability", pa.float32()),  # the model's out-of-sample P(present)
        pa.field("reason", pa.string()),  # "missing" (given absent, model sure present) or "extra" (the reverse)
    ]
)


def _thresholds(threshold: float | Mapping[str, float], names: Iterable[str]) -> dict[str, float]:
    if isinstance(threshold, Mapping):
        out = {name: float(threshold.get(name, REVIEW_CONFIDENCE)) for name in names}
    else:
        out = {name: float(threshold) for name in names}
    bad = {k: v for k, v in out.items() if not 0.0 <= v <= 1.0}
    if bad:
        raise ValueError(f"review thresholds must be in [0, 1]; got {bad}")
    return out


def build_label_review_set(
    aggregated: pa.Table,
    *,
    threshold: float | Mapping[str, float] = REVIEW_CONFIDENCE,
    gold: Mapping[str, Sequence[str]] | None = None,
    flagged: pa.Table | None = None,
) -> pa.Table:
    """Records to review (REVIEW_SET_SCHEMA) from aggregate_multilabel's table, each reason naming its label.

    Reasons: "low_confidence:<label>" (that label's decision max(p, 1 - p) is below its threshold:
    `threshold` is one value or label -> value, REVIEW_CONFIDENCE by default), "gold_mismatch:<label>" (a
    gold record whose set differs from its known set on that label) and "likely_mislabeled:<label>" (rows of
    `flagged`, LABEL_FLAG_SCHEMA). `label` is the aggregated set joined by ";". Least confident first.
    """
    by_id: dict[str, dict] = {}
    names = {p["label"] for row in aggregated.column("posteriors").to_pylist() for p in row or []}
    limits = _thresholds(threshold, names)
    gold_sets = {rid: frozenset(v) for rid, v in (gold or {}).items()}
    for row in aggregated.select(["record_id", "labels", "label_confidence", "posteriors"]).to_pylist():
        reasons = []
        chosen = frozenset(row["labels"] or [])
        for entry in row["posteriors"] or []:
            p, name = entry["posterior"], entry["label"]
            if row["record_id"] in gold_sets and (name in chosen) != (name in gold_sets[row["record_id"]]):
                reasons.append(f"{GOLD_MISMATCH}:{name}")
            if max(p, 1.0 - p) < limits[name]:
                reasons.append(f"{LOW_CONFIDENCE}:{name}")
        if reasons:
            by_id[row["record_id"]] = {**row, "reasons": reasons}
    known = {r["record_id"]: r for r in aggregated.select(["record_id", "labels", "label_confidence"]).to_pylist()}
    for flag in flagged.to_pylist() if flagged is not None else []:
        entry = by_id.setdefault(
            flag["record_id"],
            {**known.get(flag["record_id"], {"labels": None, "label_confidence": None}), "reasons": []},
        )
        entry["reasons"].append(f"{LIKELY_MISLABELED}:{flag['label']}")
    rows = [
        {
            "record_id": record_id,
            "label": None if entry.get("labels") is None else ";".join(entry["labels"]),
            "label_confidence": entry.get("label_confidence"),
            "reasons": sorted(set(entry["reasons"])),
        }
        for record_id, entry in by_id.items()
    ]
    rows.sort(key=lambda r: (-1.0 if r["label_confidence"] is None else r["label_confidence"], r["record_id"]))
    return pa.Table.from_pylist(rows, schema=REVIEW_SET_SCHEMA)


def find_label_issues_per_label(given: np.ndarray, probs: np.ndarray, names: Sequence[str]) -> list[dict]:
    """Likely wrong (record, label) pairs by confident learning per label, one-vs-rest (Northcutt et al. 2021,
    as cleanlab's multi_label mode does): for label k, a record given "absent" whose P(present) is at least
    the mean P(present) of the records given "present" is flagged "missing", and one given "present" whose
    P(absent) is at least the mean P(absent) of those given "absent" is flagged "extra".

    `given` (N, K) of 0/1, `probs` (N, K) out-of-sample P(present). Returns [{"row", "label", "given",
    "probability", "reason"}]. A label with no row given present (or none absent) flags nothing.
    """
    given = np.asarray(given, dtype=bool)
    probs = np.asarray(probs, dtype=np.float64)
    if given.shape != probs.shape or given.ndim != 2 or given.shape[1] != len(names):
        raise ValueError(f"given {given.shape} and probs {probs.shape} must both be (N, {len(names)})")
    flags = []
    for k, name in enumerate(names):
        present, absent = given[:, k], ~given[:, k]
        if not present.any() or not absent.any():
            continue
        t_present = probs[present, k].mean()
        t_absent = (1.0 - probs[absent, k]).mean()
        for i in np.flatnonzero(absent & (probs[:, k] >= t_present)):
            flags.append(
                {"row": int(i), "label": name, "given": False, "probability": float(probs[i, k]), "reason": "missing"}
            )
        for i in np.flatnonzero(present & (1.0 - probs[:, k] >= t_absent)):
            flags.append(
                {"row": int(i), "label": name, "given": True, "probability": float(probs[i, k]), "reason": "extra"}
            )
    return flags


def get_label_uncertainty_scores(probs: np.ndarray, method: str = "mean") -> np.ndarray:
    """Per-record uncertainty in [0, 1] (1 = most uncertain, label it first) from per-label P(present) (N, K).

    Per label the margin between present and absent, 1 - |2p - 1| (the binary margin, as in the multi-label
    active learning of Reyes, Morell & Ventura 2018, "Effective active learning strategy for multi-label
    learning"), then the mean over labels ("mean") or the largest ("max").
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probs must be (N, K); got shape {probs.shape}")
    margin = 1.0 - np.abs(2.0 * probs - 1.0)
    if method == "mean":
        return margin.mean(axis=1)
    if method == "max":
        return margin.max(axis=1)
    raise ValueError(f"unknown method {method!r}: expected mean or max")


def build_multilabel_prediction(
    labels: Sequence[str], score: float, model_version: str, from_name: str = "label"
) -> dict:
    """A Label Studio prediction: the predicted set as one multiple-Choices result, with model_version and score."""
    return {
        "model_version": model_version,
        "score": float(score),
        "result": [{"from_name": from_name, "to_name": "image", "type": "choices", "value": {"choices": list(labels)}}],
    }


def flag_label_set_errors(
    labeled: pa.Table, predictions: pa.Table, names: Sequence[str], *, seed: int = 0
) -> tuple[pa.Table | None, str | None]:
    """Likely wrong labels of multi-label records (LABEL_FLAG_SCHEMA), one row per (record, label).

    `labeled` has record_id and labels (attach_label_sets' output); `predictions` (PREDICTION_SCHEMA) each
    record's model embedding. Out-of-sample P(present) per label comes from cross-validated logistic regression
    over those embeddings (labeling.label_errors.compute_out_of_sample_probs on the binary question), since the
    model's own outputs on its training items are in-sample; find_label_issues_per_label then flags. Returns
    (flags, None), or (None, why) when a label has too few present (or absent) records yet, which is no error.
    """
    from labeling.label_errors import compute_out_of_sample_probs

    emb_by_id = dict(
        zip(predictions.column("record_id").to_pylist(), predictions.column("embedding").to_pylist(), strict=True)
    )
    rows = [r for r in labeled.select(["record_id", "labels"]).to_pylist() if emb_by_id.get(r["record_id"])]
    if not rows:
        return None, "no labeled record has a model embedding"
    features = np.asarray([emb_by_id[r["record_id"]] for r in rows], dtype=np.float64)
    given = np.asarray([[name in (r["labels"] or []) for name in names] for r in rows], dtype=bool)
    probs = np.zeros(given.shape)
    for k, name in enumerate(names):
        try:
            probs[:, k] = compute_out_of_sample_probs(features, given[:, k].astype(np.int64), seed=seed)[:, -1]
        except ValueError as reason:
            return None, f"label {name!r}: {reason}"
    flags = find_label_issues_per_label(given, probs, names)
    out = [
        {**{k: f[k] for k in ("label", "given", "probability", "reason")}, "record_id": rows[f["row"]]["record_id"]}
        for f in flags
    ]
    return pa.Table.from_pylist(out, schema=LABEL_FLAG_SCHEMA), None


def as_selection_predictions(predictions: pa.Table, method: str = "mean") -> pa.Table:
    """`predictions` (PREDICTION_SCHEMA, per-label sigmoid `probs`) with each row's probs replaced by the two-way
    distribution [1 - u/2, u/2], u = get_label_uncertainty_scores: its margin uncertainty is exactly u, so
    labeling.selection's margin-based strategies (hybrid: uncertainty, then diversity over the embeddings)
    rank multi-label records by their per-label margin unchanged."""
    probs = np.asarray(predictions.column("probs").to_pylist(), dtype=np.float64)
    u = get_label_uncertainty_scores(probs.reshape(predictions.num_rows, -1), method)
    two_way = pa.array([[1.0 - s / 2.0, s / 2.0] for s in u], pa.list_(pa.float32()))
    return predictions.set_column(predictions.schema.get_field_index("probs"), "probs", two_way)


def attach_label_set_predictions(
    tasks: list[dict], predictions: pa.Table | None, model_version: str | None
) -> list[dict]:
    """`tasks` (labeling.studio_tasks.build_tasks) each with its record's predicted set as an inline
    pre-annotation (build_multilabel_prediction, score = the prediction's confidence). The predicted set is
    `predicted_label` split on ";" (training.multilabel_model.describe_label_sets); a row's own
    `model_version` column wins over `model_version`."""
    if predictions is None or not predictions.num_rows:
        return tasks
    versions = (
        predictions.column("model_version").to_pylist()
        if "model_version" in predictions.column_names
        else [None] * predictions.num_rows
    )
    by_id = {
        rid: (label, conf, version or model_version)
        for rid, label, conf, version in zip(
            predictions.column("record_id").to_pylist(),
            predictions.column("predicted_label").to_pylist(),
            predictions.column("confidence").to_pylist(),
            versions,
            strict=True,
        )
    }
    out = []
    for task in tasks:
        found = by_id.get(task["data"]["record_id"])
        if found is not None and found[0] is not None and found[2]:
            chosen = [name for name in found[0].split(";") if name]
            task = {**task, "predictions": [build_multilabel_prediction(chosen, found[1] or 0.0, found[2])]}
        out.append(task)
    return out

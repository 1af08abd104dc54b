"""Label-error detection by confident learning over out-of-sample predicted probabilities (no cleanlab/AGPL)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

# Folds for out-of-sample probabilities: 5 is the usual cross-validation choice and what Northcutt et al.
# (2021, "Confident Learning: Estimating Uncertainty in Dataset Labels", §4) use for their experiments.
N_FOLDS = 5
FILTERS = ("prune_by_noise_rate", "confident_joint")

LABEL_ERROR_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("given_label", pa.string()),
        pa.field("suggested_label", pa.string()),
        pa.field("self_confidence", pa.float32()),
        pa.field("reason", pa.string()),
    ]
)


def _check(labels: np.ndarray, pred_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    probs = np.asarray(pred_probs, dtype=np.float64)
    if probs.ndim != 2 or labels.ndim != 1 or labels.shape[0] != probs.shape[0]:
        raise ValueError(f"need labels (N,) and pred_probs (N, K); got {labels.shape} and {probs.shape}")
    out_of_range = labels.size and (labels.min() < 0 or labels.max() >= probs.shape[1])
    if not np.issubdtype(labels.dtype, np.integer) or out_of_range:
        raise ValueError(f"labels must be integers in [0, {probs.shape[1]})")
    if not np.all(np.isfinite(probs)) or np.any(probs < 0):
        raise ValueError("pred_probs must be finite and non-negative")
    return labels.astype(np.int64), probs


def get_self_confidence_scores(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """p(given label) per item (N,), in [0, 1]; low = the model doubts the given label (look at it first)."""
    labels, probs = _check(labels, pred_probs)
    return probs[np.arange(len(labels)), labels]


def compute_confident_joint(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """The confident joint C (K, K): C[i, j] counts items labeled i whose confident true class is j.

    Per-class threshold t_j = mean p_j over items labeled j (mean self-confidence); an item counts
    toward the class j with the largest p_j among those with p_j >= t_j, and not at all if none passes.
    Rows are then calibrated to the given label counts (Northcutt et al. 2021, eq. 2-3).
    """
    labels, probs = _check(labels, pred_probs)
    k = probs.shape[1]
    thresholds = np.array(
        [probs[labels == j, j].mean() if np.any(labels == j) else np.inf for j in range(k)], dtype=np.float64
    )
    above = probs >= thresholds[None, :]
    masked = np.where(above, probs, -np.inf)
    confident = np.argmax(masked, axis=1)
    counted = above.any(axis=1)
    joint = np.zeros((k, k), dtype=np.float64)
    np.add.at(joint, (labels[counted], confident[counted]), 1.0)
    label_counts = np.bincount(labels, minlength=k).astype(np.float64)
    row_sums = joint.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        calibrated = np.where(row_sums > 0, joint / row_sums * label_counts[:, None], 0.0)
    return calibrated


def find_label_issues(
    labels: np.ndarray, pred_probs: np.ndarray, *, filter_by: str = "prune_by_noise_rate"
) -> np.ndarray:
    """Boolean mask (N,): True = probably mislabeled, by confident learning over out-of-sample `pred_probs` (N, K).

    "prune_by_noise_rate" (the paper's default): for each off-diagonal cell (i, j) of the calibrated
    confident joint, flag the round(C[i, j]) items labeled i with the largest margin p_j - p_i.
    "confident_joint": flag every item whose confident class differs from its label.
    `pred_probs` must come from a model that did not train on that item (cross-validation).
    """
    labels, probs = _check(labels, pred_probs)
    if filter_by not in FILTERS:
        raise ValueError(f"unknown filter_by {filter_by!r}; use one of {FILTERS}")
    n, k = probs.shape
    issues = np.zeros(n, dtype=bool)
    if n == 0:
        return issues
    if filter_by == "confident_joint":
        thresholds = np.array([probs[labels == j, j].mean() if np.any(labels == j) else np.inf for j in range(k)])
        above = probs >= thresholds[None, :]
        confident = np.argmax(np.where(above, probs, -np.inf), axis=1)
        return above.any(axis=1) & (confident != labels)
    joint = compute_confident_joint(labels, probs)
    for i in range(k):
        members = np.flatnonzero(labels == i)
        for j in range(k):
            count = round(float(joint[i, j]))
            if i == j or count == 0 or members.size == 0:
                continue
            margin = probs[members, j] - probs[members, i]
            issues[members[np.argsort(-margin, kind="stable")[:count]]] = True
    return issues


def compute_out_of_sample_probs(
    features: np.ndarray, labels: np.ndarray, *, n_folds: int = N_FOLDS, seed: int = 0
) -> np.ndarray:
    """Cross-validated class probabilities (N, K) of a logistic regression over `features` (N, D).

    Each item's row comes from a model that never saw it, as confident learning requires. Folds
    shrink to the smallest class's size (at least 2); a class absent from a training fold gets 0.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"need features (N, D) and labels (N,); got {x.shape} and {y.shape}")
    k = int(y.max()) + 1 if y.size else 0
    counts = np.bincount(y, minlength=k)
    folds = min(n_folds, int(counts[counts > 0].min()) if k else 0)
    if folds < 2:
        raise ValueError("every class needs at least 2 labeled items for out-of-sample probabilities")
    out = np.zeros((len(y), k), dtype=np.float64)
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        scaler = StandardScaler().fit(x[train])
        model = LogisticRegression(max_iter=1000).fit(scaler.transform(x[train]), y[train])
        out[np.ix_(test, model.classes_)] = model.predict_proba(scaler.transform(x[test]))
    return out


def flag_label_errors(
    labeled: pa.Table, predictions: pa.Table, classes: list[str], *, n_folds: int = N_FOLDS, seed: int = 0
) -> pa.Table:
    """Likely mislabeled records of a release (LABEL_ERROR_SCHEMA), lowest self-confidence first.

    `labeled` has record_id and label (a release split or attach_labels' output); `predictions`
    (PREDICTION_SCHEMA) gives each record's model embedding. Out-of-sample probabilities come from
    cross-validated logistic regression over those embeddings, since the trained model's own
    predictions on its training items are in-sample and would hide their errors. Each flag's reason
    is "confident_learning"; send them to the review queue.
    """
    ids = labeled.column("record_id").to_pylist()
    given = labeled.column("label").to_pylist()
    emb_by_id = dict(
        zip(predictions.column("record_id").to_pylist(), predictions.column("embedding").to_pylist(), strict=True)
    )
    index = {c: i for i, c in enumerate(classes)}
    keep = [i for i, (rid, label) in enumerate(zip(ids, given, strict=True)) if label in index and emb_by_id.get(rid)]
    if not keep:
        return pa.Table.from_pylist([], schema=LABEL_ERROR_SCHEMA)
    features = np.asarray([emb_by_id[ids[i]] for i in keep], dtype=np.float64)
    y = np.asarray([index[given[i]] for i in keep], dtype=np.int64)
    probs = compute_out_of_sample_probs(features, y, n_folds=n_folds, seed=seed)
    if probs.shape[1] < len(classes):
        probs = np.pad(probs, ((0, 0), (0, len(classes) - probs.shape[1])))
    issues = find_label_issues(y, probs)
    confidence = get_self_confidence_scores(y, probs)
    rows = [
        {
            "record_id": ids[keep[i]],
            "given_label": given[keep[i]],
            "suggested_label": classes[int(np.argmax(probs[i]))],
            "self_confidence": float(confidence[i]),
            "reason": "confident_learning",
        }
        for i in np.flatnonzero(issues)
    ]
    rows.sort(key=lambda r: (r["self_confidence"], r["record_id"]))
    return pa.Table.from_pylist(rows, schema=LABEL_ERROR_SCHEMA)


def find_pool_label_issues(
    records: pa.Table, annotations: pa.Table, predictions: pa.Table, classes: list[str]
) -> tuple[pa.Table | None, str | None]:
    """Likely mislabeled pool records: their Dawid-Skene labels from `annotations` checked by
    flag_label_errors against the model's `predictions` (label order `classes`).

    Returns (LABEL_ERROR_SCHEMA table, None), or (None, why) when there are too few labels per class yet
    for out-of-sample probabilities (an early round), which is no error.
    """
    from labeling.quality import aggregate_dawid_skene
    from labeling.rounds import attach_labels

    labeled = attach_labels(records, aggregate_dawid_skene(annotations))
    try:
        return flag_label_errors(labeled, predictions, classes), None
    except ValueError as reason:
        return None, str(reason)

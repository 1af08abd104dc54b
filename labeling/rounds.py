"""Label rounds as pure table logic: which pool records to send next, and labels joined back onto records."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from labeling.box_selection import (
    DEFAULT_BOX_UNCERTAINTY,
    DEFAULT_DETECT_STRATEGY,
    DETECT_STRATEGIES,
    detection_arrays,
    get_box_uncertainty_scores,
    select_detection_batch,
)
from labeling.quality import live_votes
from labeling.selection import MODEL_STRATEGIES, compute_cheap_embeddings, select_batch

STRATEGIES = (
    "auto",
    "diversity",
    "typiclust",
    "probcover",
    "uncertainty",
    "random",
    "least-confidence",
    "margin",
    "entropy",
    "coreset",
    "hybrid",
)


@dataclass
class RoundPlan:
    """The records chosen for one round, in labeling order, with each one's priority in [0, 1].

    `uses_model` says the newest model's predictions chose the batch; `gold` lists the record ids
    mixed in as gold (known answers), a subset of `record_ids`. `embeddings` names the space the batch's
    diversity (or typicality) was measured in: an encoder version (self-supervised pool embeddings), "pixels"
    (compute_cheap_embeddings), "model" (the newest model's own embeddings), or None when no embedding
    took part (random, pure uncertainty).
    """

    record_ids: list[str]
    priorities: dict[str, float]
    strategy: str
    candidates: int
    uses_model: bool = False
    gold: list[str] = field(default_factory=list)
    model_version: str | None = None
    embeddings: str | None = None


def _embedding_rows(table: pa.Table | None, ids: list[str]) -> np.ndarray | None:
    """Rows (len(ids), D) of an embeddings table (record_id, embedding) for `ids`; None unless all are there."""
    if table is None:
        return None
    by_id = {rid: i for i, rid in enumerate(table.column("record_id").to_pylist())}
    if not all(rid in by_id for rid in ids):
        return None
    if not ids:
        dim = len(table.column("embedding")[0].as_py()) if table.num_rows else 0
        return np.zeros((0, dim))
    rows = table.column("embedding").take(pa.array([by_id[rid] for rid in ids], pa.int64())).to_pylist()
    return np.asarray(rows, dtype=np.float64)


def _encoder_space(
    pool_embeddings: pa.Table | None, ids: list[str], pushed_ids: list[str]
) -> tuple[np.ndarray, np.ndarray, str] | None:
    """(rows of `ids`, rows of the pushed records it has, the encoder's version) in a self-supervised encoder's
    space; None unless it embeds every one of `ids` (an encoder older than the pool does not)."""
    rows = _embedding_rows(pool_embeddings, ids)
    if rows is None:
        return None
    embedded = set(pool_embeddings.column("record_id").to_pylist())
    labeled = _embedding_rows(pool_embeddings, [rid for rid in pushed_ids if rid in embedded])
    source = (pool_embeddings.schema.metadata or {}).get(b"flywheel.encoder", b"self-supervised").decode()
    return rows, labeled if labeled is not None else np.zeros((0, rows.shape[1])), source


def _cold_arrays(
    images: pa.Table, candidates: pa.Table, already_pushed: set[str], pool_embeddings: pa.Table | None
) -> tuple[np.ndarray, np.ndarray, str]:
    """(candidate embeddings, embeddings of pushed pool records, their source) for a cold start: the
    self-supervised pool embeddings when they cover every candidate, else cheap pixel features."""
    ids = candidates.column("record_id").to_pylist()
    pushed_rows = images.filter(pc.is_in(images.column("record_id"), pa.array(sorted(already_pushed), pa.string())))
    pushed_ids = list(dict.fromkeys(pushed_rows.column("record_id").to_pylist()))
    learned = _encoder_space(pool_embeddings, ids, pushed_ids)
    if learned is not None:
        return learned
    cheap = compute_cheap_embeddings(candidates.column("image").to_pylist())
    first = {rid: i for i, rid in reversed(list(enumerate(pushed_rows.column("record_id").to_pylist())))}
    pushed_images = [pushed_rows.column("image")[first[rid]].as_py() for rid in pushed_ids]
    return cheap, compute_cheap_embeddings(pushed_images), "pixels"


def _diversity_space(candidates: pa.Table, pool_embeddings: pa.Table | None, kind: str) -> tuple[np.ndarray, str]:
    """(candidate embeddings, their source) for plain diversity: pixels for images; for other kinds the given
    pool embeddings, which must cover every candidate."""
    if kind == "image":
        return compute_cheap_embeddings(candidates.column("image").to_pylist()), "pixels"
    rows = _embedding_rows(pool_embeddings, candidates.column("record_id").to_pylist())
    if rows is None:
        raise ValueError(f"a {kind} round's diversity needs pool embeddings of every candidate")
    return rows, (pool_embeddings.schema.metadata or {}).get(b"flywheel.encoder", b"embeddings").decode()


def _prediction_arrays(predictions: pa.Table, ids: list[str]) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """(ids that have a prediction, their probs (n, K), their embeddings (n, D) or None when absent)."""
    by_id = {rid: i for i, rid in enumerate(predictions.column("record_id").to_pylist())}
    scored = [rid for rid in ids if rid in by_id]
    rows = [by_id[rid] for rid in scored]
    probs = np.asarray(predictions.column("probs").take(pa.array(rows, pa.int64())).to_pylist(), dtype=np.float64)
    embeddings = None
    if "embedding" in predictions.column_names and rows:
        values = predictions.column("embedding").take(pa.array(rows, pa.int64())).to_pylist()
        if all(v is not None for v in values):
            embeddings = np.asarray(values, dtype=np.float64)
    if probs.ndim != 2:
        probs = probs.reshape(len(rows), -1) if rows else np.zeros((0, 0))
    return scored, probs, embeddings


def _ranks_uncertainty(predictions: pa.Table, task: str) -> bool:
    """Whether a single-label model's predictions can rank uncertainty: it knows at least 2 classes. A first batch
    of one class (likely at a batch of 2 on 2 classes) trains a model whose softmax is 1 everywhere."""
    if task in ("detect", "multilabel"):
        return True
    return len(predictions.column("probs")[0].as_py() or []) >= 2


# Labels per class below which "auto" keeps picking by TypiClust over a pretrained encoder's embeddings, model or
# not: in the product's loop (bench/LABELING.md 1b-iii; SimCLR, a linear probe, 5 seeds, digits, MNIST, LFW)
# TypiClust every round beat hybrid after a TypiClust cold start at 2-3 labels per class by 1-4 std, and was
# level with it at 6 (the end of the measured range): a model fitted on so few labels ranks uncertainty by noise.
TYPICLUST_LABELS_PER_CLASS = 6


def _resolve_auto(warm: bool, covered: bool, task: str, n_classes: int | None, labeled: int) -> str:
    """What "auto" runs: TypiClust over the encoder while a classify round has few labels per class; hybrid once a
    model ranks uncertainty; else the cold start (TypiClust over the encoder's embeddings, else pixel diversity)."""
    if covered and task == "classify" and n_classes and labeled < TYPICLUST_LABELS_PER_CLASS * n_classes:
        return "typiclust"
    if warm:
        return DEFAULT_DETECT_STRATEGY if task == "detect" else "hybrid"
    return "typiclust" if covered else "diversity"


def _check_strategy(strategy: str, task: str) -> None:
    """Refuse a strategy no round knows, and a detect-only one (DETECT_STRATEGIES) for another task."""
    if strategy in STRATEGIES or (task == "detect" and strategy in DETECT_STRATEGIES):
        return
    if strategy in DETECT_STRATEGIES:
        raise ValueError(f"strategy {strategy!r} ranks detections' uncertainty; a {task} round has none")
    raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")


def _fresh(images: pa.Table, already_pushed: set[str]) -> pa.Table:
    """The image rows not pushed yet; a record listed twice in the pool is a candidate once."""
    seen: set[str] = set()
    fresh = []
    for rid in images.column("record_id").to_pylist():
        fresh.append(rid not in already_pushed and rid not in seen)
        seen.add(rid)
    return images.filter(pa.array(fresh, type=pa.bool_()))


def plan_round(
    pool: pa.Table,
    already_pushed: set[str],
    budget: int,
    *,
    strategy: str = "auto",
    predictions: pa.Table | None = None,
    seed: int = 0,
    min_per_class: int = 0,
    pool_factor: int = 3,
    pool_embeddings: pa.Table | None = None,
    n_classes: int | None = None,
    kind: str = "image",
    task: str = "classify",
    labeled: int | None = None,
) -> RoundPlan:
    """Choose up to `budget` records of `kind` of `pool` that are not in Label Studio yet (never one twice):
    images, or text for a text round (whose `pool_embeddings` must cover every candidate, as
    corpus.text_features.text_embedding_table does).

    `predictions` (PREDICTION_SCHEMA) are the newest model's scores over the pool; `pool_embeddings`
    (record_id, embedding) a self-supervised encoder's (training.encoders), named by the schema metadata
    key `flywheel.encoder`. "auto" is "hybrid" (margin pre-filter, then core-set around what is already pushed,
    over the pool embeddings when they cover the scored candidates, else the model's) when predictions of a
    model that knows 2 classes or more exist; else the cold start: "typiclust" (labeling.typicality) over the
    pool embeddings when they cover every candidate, else "diversity" (k-center greedy over cheap pixel
    embeddings). "typiclust" and "probcover" (labeling.probcover; `n_classes`: the label set's size, else the
    model's) asked for without pool embeddings run over the pixel features. "least-confidence", "margin",
    "entropy" rank by that uncertainty alone; "coreset" is k-center around what is pushed; "uncertainty" is the
    earlier margin + diversity recipe; "random" is the baseline. `min_per_class` > 0 guarantees that many picks
    per predicted class where the pool has them. For `task` "detect" the model strategies rank images by their
    boxes' uncertainty and "auto" with a model is "distinct" (labeling.box_selection). Priority 1 = label first.
    "auto" stays "typiclust" over an encoder's embeddings while `labeled` (default: what is pushed) is below
    TYPICLUST_LABELS_PER_CLASS a class (_resolve_auto).
    """
    _check_strategy(strategy, task)
    if budget < 0:
        raise ValueError(f"budget must be >= 0; got {budget}")
    images = pool.filter(pc.equal(pool.column("kind"), kind))
    candidates = _fresh(images, already_pushed)
    candidate_ids = candidates.column("record_id").to_pylist()
    has_model = predictions is not None and predictions.num_rows > 0
    if strategy == "auto":
        covered = pool_embeddings is not None and _embedding_rows(pool_embeddings, candidate_ids) is not None
        warm = has_model and _ranks_uncertainty(predictions, task)
        labeled = len(already_pushed) if labeled is None else labeled
        strategy = _resolve_auto(warm, covered, task, n_classes, labeled)
    uses_model = strategy in MODEL_STRATEGIES or strategy == DEFAULT_DETECT_STRATEGY  # detect-only, ranks boxes
    k = min(budget, len(candidate_ids))
    if k == 0:
        return RoundPlan([], {}, strategy, len(candidate_ids), uses_model)

    if strategy == "random":
        picks, prio = select_batch("random", k, n=len(candidate_ids), seed=seed)
        chosen, source = candidate_ids, None
    elif strategy in ("diversity", "typiclust", "probcover"):
        if n_classes is None and has_model and task != "detect":
            n_classes = len(predictions.column("probs")[0].as_py() or [])
        picks, prio, source = _cold_batch(
            strategy, k, images, candidates, already_pushed, pool_embeddings, kind, n_classes=n_classes, seed=seed
        )
        chosen = candidate_ids
    else:
        if not has_model:
            raise ValueError(f"strategy {strategy!r} needs model predictions over the pool")
        chosen, picks, prio, source = (_detect_batch if task == "detect" else _model_batch)(
            strategy,
            k,
            candidate_ids,
            already_pushed,
            predictions,
            pool_embeddings,
            min_per_class=min_per_class,
            pool_factor=pool_factor,
            seed=seed,
        )
    record_ids = [chosen[i] for i in picks]
    priorities = {rid: float(p) for rid, p in zip(record_ids, prio, strict=True)}
    return RoundPlan(record_ids, priorities, strategy, len(candidate_ids), uses_model, embeddings=source)


def _cold_batch(
    strategy: str,
    k: int,
    records: pa.Table,
    candidates: pa.Table,
    already_pushed: set[str],
    pool_embeddings: pa.Table | None,
    kind: str,
    *,
    n_classes: int | None,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, str | None]:
    """(picks among `candidates`, priorities, the embeddings' source) for a strategy that needs no model:
    diversity (k-center greedy), TypiClust or ProbCover over the pool embeddings, else the cheap features."""
    n = candidates.num_rows
    if strategy == "diversity":
        embeddings, source = _diversity_space(candidates, pool_embeddings, kind)
        picks, prio = select_batch("diversity", k, n=n, cold_embeddings=embeddings, seed=seed)
        return picks, prio, source
    embeddings, labeled, source = _cold_arrays(records, candidates, already_pushed, pool_embeddings)
    picks, prio = select_batch(
        strategy, k, n=n, cold_embeddings=embeddings, labeled_embeddings=labeled, seed=seed, n_classes=n_classes
    )
    return picks, prio, source


def _model_batch(
    strategy: str,
    k: int,
    candidate_ids: list[str],
    already_pushed: set[str],
    predictions: pa.Table,
    pool_embeddings: pa.Table | None,
    **options: int,
) -> tuple[list[str], np.ndarray, np.ndarray, str | None]:
    """(the candidates the model scored, picks among them, priorities, the embeddings' source) for a model
    strategy. Hybrid measures its diversity in the self-supervised encoder's space when it embeds every scored
    candidate (it was trained on the whole pool, the model only on the few labels so far), else in the model's."""
    chosen, probs, embeddings = _prediction_arrays(predictions, candidate_ids)
    if not chosen:
        raise ValueError("no pool record has a prediction: score the pool with the newest model first")
    labeled = None
    source = "model" if strategy in ("coreset", "hybrid", "uncertainty") else None
    if strategy in ("coreset", "hybrid"):
        _, _, labeled = _prediction_arrays(predictions, sorted(already_pushed))
    learned = _encoder_space(pool_embeddings, chosen, sorted(already_pushed)) if strategy == "hybrid" else None
    if learned is not None:
        embeddings, labeled, source = learned
    picks, prio = select_batch(
        strategy,
        min(k, len(chosen)),
        n=len(chosen),
        probs=probs,
        embeddings=embeddings,
        labeled_embeddings=labeled,
        **options,
    )
    return chosen, picks, prio, source


def _detect_batch(
    strategy: str,
    k: int,
    candidate_ids: list[str],
    already_pushed: set[str],
    predictions: pa.Table,
    pool_embeddings: pa.Table | None,
    *,
    pool_factor: int = 3,
    **_: int,
) -> tuple[list[str], np.ndarray, np.ndarray, str | None]:
    """_model_batch for a detector: image-level uncertainty from its box scores (Brust et al. 2018's sum), the
    diversity measured in the same spaces (the encoder's when it embeds every scored candidate, else the model's)."""
    chosen, scores, embeddings = detection_arrays(predictions, candidate_ids)
    if not chosen:
        raise ValueError("no pool record has a prediction: score the pool with the newest model first")
    _, _, labeled = detection_arrays(predictions, sorted(already_pushed))
    source = None if strategy == "margin" else "model"
    diverse = strategy in ("hybrid", "distinct")
    learned = _encoder_space(pool_embeddings, chosen, sorted(already_pushed)) if diverse else None
    if learned is not None:
        embeddings, labeled, source = learned
    picks, prio = select_detection_batch(
        strategy,
        min(k, len(chosen)),
        get_box_uncertainty_scores(scores, DEFAULT_BOX_UNCERTAINTY),
        embeddings=embeddings,
        labeled_embeddings=labeled,
        pool_factor=pool_factor,
    )
    return chosen, picks, prio, source


def add_gold(plan: RoundPlan, gold: dict[str, str], n: int, *, already_pushed: set[str], seed: int = 0) -> RoundPlan:
    """`plan` with `n` gold records (record_id -> known label) not yet in Label Studio mixed into its order.

    Gold records are spread evenly through the batch, each with its neighbour's priority, so an
    annotator working in priority order meets them throughout and cannot tell them apart. Keep gold
    out of ordinary selection by passing its ids in plan_round's `already_pushed`.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0; got {n}")
    taken = set(plan.record_ids) | already_pushed
    spare = sorted(rid for rid in gold if rid not in taken)
    rng = np.random.default_rng(seed)
    picked = [spare[i] for i in rng.permutation(len(spare))[: min(n, len(spare))]]
    if not picked:
        return plan
    order = list(plan.record_ids)
    priorities = dict(plan.priorities)
    step = (len(order) + 1) / (len(picked) + 1)
    for j, rid in enumerate(picked):
        at = min(len(order), round(step * (j + 1)) + j)
        neighbour = order[at - 1] if at > 0 else (order[0] if order else None)
        priorities[rid] = priorities.get(neighbour, 1.0) if neighbour else 1.0
        order.insert(at, rid)
    return dataclasses.replace(plan, record_ids=order, priorities=priorities, gold=plan.gold + picked)


def plan_next_batch(
    pool: pa.Table,
    already_pushed: set[str],
    gold: dict[str, str],
    *,
    budget: int,
    gold_per_round: int = 0,
    strategy: str = "auto",
    predictions: pa.Table | None = None,
    model_version: str | None = None,
    seed: int = 0,
    min_per_class: int = 0,
    pool_embeddings: pa.Table | None = None,
    n_classes: int | None = None,
    kind: str = "image",
    task: str = "classify",
    labeled: int | None = None,
) -> RoundPlan:
    """The next batch of `kind` records: plan_round over the pool minus what Label Studio has and minus gold, then
    `gold_per_round` gold records mixed in (add_gold). `model_version` names the model behind
    `predictions`; the plan keeps it only when the model chose the batch. `pool_embeddings` are a
    self-supervised encoder's (plan_round's cold start); `n_classes` the label set's size (probcover); `task`
    the round's task type (corpus.tasks); `labeled` how many records have labels so far (plan_round's "auto").
    """
    plan = plan_round(
        pool,
        already_pushed | set(gold),
        budget,
        strategy=strategy,
        predictions=predictions,
        seed=seed,
        min_per_class=min_per_class,
        pool_embeddings=pool_embeddings,
        n_classes=n_classes,
        kind=kind,
        task=task,
        labeled=labeled,
    )
    if gold and gold_per_round:
        plan = add_gold(plan, gold, gold_per_round, already_pushed=already_pushed, seed=seed)
    plan.model_version = model_version if plan.uses_model else None
    return plan


def trusted_labels(annotations: pa.Table, trusted_origins: Sequence[str]) -> dict[str, tuple[str, str]]:
    """record_id -> (label, origin) for records an annotator in `trusted_origins` (e.g. `imported:<source>`)
    labeled: its newest live vote; when several trusted origins voted, the first of `trusted_origins` wins."""
    if not trusted_origins:
        return {}
    found: dict[str, tuple[str, str]] = {}
    for record_id, by_annotator in live_votes(annotations).items():
        for origin in trusted_origins:
            if origin in by_annotator:
                found[record_id] = (by_annotator[origin], origin)
                break
    return found


def attach_labels(
    records: pa.Table,
    aggregated: pa.Table,
    *,
    annotations: pa.Table | None = None,
    trusted_origins: Sequence[str] = (),
) -> pa.Table:
    """Records that have an aggregated (or trusted) label, with label, label_source, label_confidence and
    annotators set.

    `aggregated` is `quality.aggregate_majority`'s (or Dawid-Skene's) table. A label from one annotator is
    `human`; from several, `consensus`. With `annotations` and `trusted_origins`, a record that a trusted
    origin labeled takes that label as it is: label_source is the origin (`imported:<source>`), confidence 1.
    """
    if trusted_origins and annotations is None:
        raise ValueError("trusted_origins needs the annotations their votes are in")
    trusted = trusted_labels(annotations, trusted_origins) if annotations is not None else {}
    labels = {
        row["record_id"]: row
        for row in aggregated.select(
            ["record_id", "label", "label_confidence", "annotators", "n_annotations"]
        ).to_pylist()
    }
    keep = [rid in labels or rid in trusted for rid in records.column("record_id").to_pylist()]
    labeled = records.filter(pa.array(keep, type=pa.bool_()))
    rows = []
    for rid in labeled.column("record_id").to_pylist():
        voted = labels.get(rid)
        if rid in trusted:
            label, origin = trusted[rid]
            annotators = voted["annotators"] if voted else [origin]
            rows.append({"label": label, "source": origin, "confidence": 1.0, "annotators": annotators})
        else:
            source = "consensus" if voted["n_annotations"] > 1 else "human"
            rows.append(
                {
                    "label": voted["label"],
                    "source": source,
                    "confidence": voted["label_confidence"],
                    "annotators": voted["annotators"],
                }
            )
    columns = {
        "label": pa.array([r["label"] for r in rows], type=pa.string()),
        "label_source": pa.array([r["source"] for r in rows], type=pa.string()),
        "label_confidence": pa.array([r["confidence"] for r in rows], type=pa.float32()),
        "annotators": pa.array([r["annotators"] for r in rows], type=pa.list_(pa.string())),
    }
    for name, values in columns.items():
        labeled = labeled.set_column(labeled.schema.get_field_index(name), name, values)
    return labeled

"""Label rounds: every strategy through plan_round, never a record twice, gold mixed in, the stopping signal."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from corpus.schema import PREDICTION_SCHEMA, conform
from labeling.rounds import STRATEGIES, add_gold, plan_next_batch, plan_round
from labeling.stopping import check_stopping, choose_stop_set

CLASSES = ["cat", "dog", "bird"]


def _pool(n: int) -> pa.Table:
    images = []
    for i in range(n):
        buf = io.BytesIO()
        Image.new("RGB", (16, 16), ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)).save(buf, format="PNG")
        images.append(buf.getvalue())
    ids = [f"r{i:03d}" for i in range(n)]
    return conform(pa.table({"record_id": ids, "kind": ["image"] * n, "image": images, "mime": ["image/png"] * n}))


def _predictions(ids: list[str], seed: int = 0, confident_class: int | None = None) -> pa.Table:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(ids), 3))
    if confident_class is not None:
        logits[:, confident_class] += 4.0  # a model that believes almost everything is one class...
        for i in range(0, len(ids), 10):
            logits[i, (confident_class + 1 + i // 10 % 2) % 3] += 12.0  # ...and is sure of a few others
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    emb = rng.normal(size=(len(ids), 4))
    return pa.Table.from_pylist(
        [
            {
                "record_id": rid,
                "predicted_label": CLASSES[int(p.argmax())],
                "confidence": float(p.max()),
                "probs": p.tolist(),
                "embedding": e.tolist(),
            }
            for rid, p, e in zip(ids, probs, emb, strict=True)
        ],
        schema=PREDICTION_SCHEMA,
    )


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_skips_pushed_records_and_respects_the_budget(strategy: str) -> None:
    pool = _pool(40)
    ids = pool.column("record_id").to_pylist()
    pushed = set(ids[:10])
    plan = plan_round(pool, pushed, 8, strategy=strategy, predictions=_predictions(ids), seed=1)
    assert len(plan.record_ids) == 8 == len(set(plan.record_ids))
    assert not set(plan.record_ids) & pushed
    assert plan.candidates == 30
    assert set(plan.priorities) == set(plan.record_ids)
    assert all(0.0 <= p <= 1.0 for p in plan.priorities.values())
    assert plan.uses_model == (plan.strategy not in ("random", "diversity", "typiclust", "probcover"))


def test_auto_is_diversity_cold_and_hybrid_with_a_model() -> None:
    pool = _pool(20)
    ids = pool.column("record_id").to_pylist()
    assert plan_round(pool, set(), 5).strategy == "diversity"
    warm = plan_round(pool, set(), 5, predictions=_predictions(ids))
    assert warm.strategy == "hybrid" and warm.uses_model
    with pytest.raises(ValueError, match="needs model predictions"):
        plan_round(pool, set(), 5, strategy="margin")
    with pytest.raises(ValueError, match="unknown strategy"):
        plan_round(pool, set(), 5, strategy="bald")


def test_auto_is_a_cold_start_while_the_model_knows_one_class() -> None:
    # A first batch of one class trains a one-class model: every softmax is 1, so hybrid (margin) cannot rank.
    pool = _pool(20)
    ids = pool.column("record_id").to_pylist()
    one_class = _predictions(ids).set_column(3, "probs", pa.array([[1.0]] * len(ids), pa.list_(pa.float32())))
    plan = plan_round(pool, set(ids[:2]), 5, predictions=one_class)
    assert plan.strategy == "diversity" and not plan.uses_model and len(plan.record_ids) == 5


def _encoder_embeddings(ids: list[str], seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(len(ids), 8)).astype(np.float32)
    return pa.table({"record_id": ids, "embedding": pa.array(vectors.tolist(), pa.list_(pa.float32()))})


@pytest.mark.parametrize(
    ("labeled", "pushed", "expected"),
    [
        (None, 0, "typiclust"),  # cold: nothing labeled
        (None, 17, "typiclust"),  # 17 pushed < 6 per class x 3 classes: the model's uncertainty is noise yet
        (None, 18, "hybrid"),  # 6 per class: hybrid takes over
        (40, 5, "hybrid"),  # imported labels count: the model was trained on 40
        (10, 30, "typiclust"),  # `labeled` is what the caller knows; it wins over the pushed count
    ],
)
def test_auto_keeps_typiclust_over_an_encoder_while_labels_per_class_are_few(labeled, pushed, expected) -> None:
    pool = _pool(60)
    ids = pool.column("record_id").to_pylist()
    plan = plan_round(
        pool,
        set(ids[:pushed]),
        6,
        predictions=_predictions(ids),
        pool_embeddings=_encoder_embeddings(ids),
        n_classes=len(CLASSES),
        labeled=labeled,
    )
    assert plan.strategy == expected and plan.uses_model == (expected == "hybrid")
    assert len(plan.record_ids) == 6 and not set(plan.record_ids) & set(ids[:pushed])


@pytest.mark.parametrize(
    ("task", "embeddings", "n_classes"), [("multilabel", True, 3), ("classify", False, 3), ("classify", True, None)]
)
def test_auto_is_hybrid_with_a_model_outside_the_measured_low_budget_case(task, embeddings, n_classes) -> None:
    # The rule was measured for single-label images over a pretrained encoder; elsewhere a model means hybrid.
    pool = _pool(30)
    ids = pool.column("record_id").to_pylist()
    plan = plan_round(
        pool,
        set(),
        5,
        predictions=_predictions(ids),
        pool_embeddings=_encoder_embeddings(ids) if embeddings else None,
        n_classes=n_classes,
        task=task,
    )
    assert plan.strategy == "hybrid"


def test_class_guard_reaches_classes_a_lopsided_model_hides() -> None:
    pool = _pool(60)
    ids = pool.column("record_id").to_pylist()
    preds = _predictions(ids, confident_class=0)
    predicted = dict(zip(ids, preds.column("predicted_label").to_pylist(), strict=True))
    assert sum(label != "cat" for label in predicted.values()) >= 4  # the pool has a few non-cats
    plan = plan_round(pool, set(), 10, strategy="least-confidence", predictions=preds, min_per_class=2)
    picked = [predicted[r] for r in plan.record_ids]
    counts = {c: picked.count(c) for c in CLASSES}
    available = {c: list(predicted.values()).count(c) for c in CLASSES}
    assert all(counts[c] >= min(2, available[c]) for c in CLASSES)


def test_gold_is_mixed_in_once_and_spread_out() -> None:
    pool = _pool(30)
    ids = pool.column("record_id").to_pylist()
    gold = {ids[0]: "cat", ids[20]: "dog", ids[21]: "bird", ids[22]: "cat"}
    # gold records are kept out of ordinary selection, then mixed in on purpose
    plan = plan_round(pool, set(ids[:5]) | set(gold), 9, strategy="random")
    mixed = add_gold(plan, gold, 3, already_pushed=set(ids[:5]))
    assert len(mixed.gold) == 3 and ids[0] not in mixed.gold  # already in Label Studio: not again
    assert len(mixed.record_ids) == len(set(mixed.record_ids)) == 12
    positions = [mixed.record_ids.index(g) for g in mixed.gold]
    assert positions[0] > 0 and positions[-1] < 11 and min(np.diff(positions)) > 1
    assert set(mixed.priorities) == set(mixed.record_ids)


def test_stopping_signal_on_prediction_tables() -> None:
    pool = _pool(50)
    ids = pool.column("record_id").to_pylist()
    stop_ids = choose_stop_set(pool, 30, seed=0)
    assert len(stop_ids) == 30 and stop_ids == choose_stop_set(pool, 30, seed=0)
    first, changed = _predictions(ids, seed=0), _predictions(ids, seed=1)
    moving = check_stopping(first, changed, stop_ids, [])
    assert moving["agreement"] < 0.5 and not moving["stop"]
    state = {"history": [0.9]}
    for _ in range(3):
        state = check_stopping(first, first, stop_ids, state["history"])
    assert state["agreement"] == 1.0 and state["stop"] and state["stop_set"] == 30


def test_next_batch_keeps_gold_out_of_selection_and_the_model_only_when_it_chose() -> None:
    pool = _pool(30)
    ids = pool.column("record_id").to_pylist()
    gold = {ids[1]: "cat", ids[2]: "dog", ids[3]: "bird"}
    preds = _predictions(ids)
    cold = plan_next_batch(pool, {ids[0]}, gold, budget=6, gold_per_round=2, model_version="m1", seed=3)
    assert cold.strategy == "diversity" and cold.model_version is None  # no predictions given: the model chose nothing
    assert len(cold.gold) == 2 and set(cold.gold) <= set(gold) and ids[0] not in cold.record_ids
    ordinary = [r for r in cold.record_ids if r not in cold.gold]
    assert len(ordinary) == 6 and not set(ordinary) & set(gold)
    warm = plan_next_batch(pool, set(), gold, budget=5, predictions=preds, model_version="m1")
    assert warm.strategy == "hybrid" and warm.model_version == "m1" and warm.gold == []
    random = plan_next_batch(pool, set(), gold, budget=5, strategy="random", predictions=preds, model_version="m1")
    assert random.model_version is None  # random ignores the model: its predictions are not pre-annotations


def _scored(ids: list[str], embeddings: np.ndarray) -> pa.Table:
    """Predictions where every record is equally uncertain, with these model embeddings."""
    p = [0.34, 0.33, 0.33]
    rows = [
        {"record_id": rid, "predicted_label": "cat", "confidence": max(p), "probs": p, "embedding": emb}
        for rid, emb in zip(ids, embeddings, strict=True)
    ]
    return pa.Table.from_pylist(rows, schema=PREDICTION_SCHEMA)


def test_hybrid_diversity_is_measured_in_the_encoders_space_when_it_covers_the_candidates() -> None:
    pool = _pool(3)
    ids = pool.column("record_id").to_pylist()
    # The model (trained on a handful of labels) sees r000 and r001 as far apart, and r002 beside r000; the
    # self-supervised encoder sees r000 and r001 as near-twins and r002 as the different one.
    model_space = np.array([[0.0, 0.0], [10.0, 0.0], [0.1, 0.0]])
    encoder_space = np.array([[0.0, 0.0], [0.01, 0.0], [10.0, 0.0]])
    encoder = pa.table(
        {"record_id": ids, "embedding": [row.astype(np.float32).tolist() for row in encoder_space]}
    ).replace_schema_metadata({"flywheel.encoder": "simclr-0003"})
    preds = _scored(ids, model_space.tolist())
    over_model = plan_round(pool, set(), 2, predictions=preds)
    assert over_model.strategy == "hybrid" and over_model.embeddings == "model"
    assert set(over_model.record_ids) == {"r000", "r001"}  # both twins: the model's features tell them apart
    plan = plan_round(pool, set(), 2, predictions=preds, pool_embeddings=encoder)
    assert plan.strategy == "hybrid" and plan.uses_model and plan.embeddings == "simclr-0003"
    assert set(plan.record_ids) == {"r000", "r002"}  # one twin only
    # A pushed record counts as labeled in the encoder's space too: with r000 pushed, its twin r001 is covered
    # and r002 is picked (over the model's space r001 would be, 10 away from r000).
    again = plan_round(pool, {"r000"}, 1, predictions=preds, pool_embeddings=encoder)
    assert again.embeddings == "simclr-0003" and again.record_ids == ["r002"]
    assert plan_round(pool, {"r000"}, 1, predictions=preds).record_ids == ["r001"]
    # An encoder that misses a scored candidate (pretrained on an older pool) leaves hybrid on the model's space.
    stale = encoder.slice(0, 2)
    assert plan_round(pool, set(), 2, predictions=preds, pool_embeddings=stale).embeddings == "model"
    # Strategies without an embedding say so; pixel diversity names its space.
    assert plan_round(pool, set(), 2, strategy="margin", predictions=preds, pool_embeddings=encoder).embeddings is None
    assert plan_round(pool, set(), 2, strategy="diversity").embeddings == "pixels"
    nxt = plan_next_batch(pool, set(), {}, budget=2, predictions=preds, model_version="m1", pool_embeddings=encoder)
    assert nxt.model_version == "m1" and nxt.embeddings == "simclr-0003"

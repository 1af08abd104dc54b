"""Text rounds: the Choices-over-Text config, tasks without media, inline pre-annotations, text batch selection."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from corpus.schema import PREDICTION_SCHEMA, conform
from corpus.text_features import text_embedding_table
from labeling.label_config import config_labels
from labeling.rounds import plan_next_batch
from labeling.text_tasks import MAX_SHOWN_CHARS, build_text_label_config, build_text_tasks, shown_text

WORDS = {"space": ["orbit", "comet", "galaxy", "planet"], "food": ["oven", "flour", "garlic", "butter"]}


def _pool(n: int = 20) -> pa.Table:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        topic = "space" if i % 2 else "food"
        text = " ".join(rng.choice(WORDS[topic] + ["the", "and", "very"], size=30))
        rows.append({"record_id": f"t{i:02d}", "kind": "text", "text": text, "title": f"T{i}", "url": f"u{i}"})
    rows.append({"record_id": "img", "kind": "image", "image": b"\x89PNG"})
    return conform(pa.Table.from_pylist(rows))


def test_config_is_single_choice_over_the_text_with_its_title():
    config = build_text_label_config(["space", "food"])
    assert '<Text name="text" value="$text"/>' in config and '<Header value="$title"/>' in config
    assert 'toName="text"' in config and 'choice="single"' in config
    assert config_labels(config) == ["space", "food"]
    with pytest.raises(ValueError, match="unique"):
        build_text_label_config(["a", "a"])


def test_long_texts_are_cut_at_a_word_with_a_note():
    assert shown_text("short text") == "short text"
    long = "word " * 2000
    shown = shown_text(long)
    assert len(shown) < MAX_SHOWN_CHARS + 100 and shown.split(" …")[0].endswith("word")
    assert f"of {len(long):,} characters shown" in shown


def test_tasks_from_text_rows_only_with_inline_predictions():
    pool = _pool(4)
    predictions = conform(
        pa.table(
            {
                "record_id": ["t01"],
                "predicted_label": ["space"],
                "confidence": pa.array([0.7], pa.float32()),
                "probs": pa.array([[0.3, 0.7]], pa.list_(pa.float32())),
            }
        ),
        PREDICTION_SCHEMA,
    )
    tasks = build_text_tasks(
        pool, priorities={"t01": 0.9}, predictions=predictions, labels=["food", "space"], model_version="m1"
    )
    assert [t["data"]["record_id"] for t in tasks] == ["t00", "t01", "t02", "t03"]  # the image row has no task
    data = tasks[1]["data"]
    assert data["title"] == "T1" and data["url"] == "u1" and data["priority"] == 0.9 and "image" not in data
    (prediction,) = tasks[1]["predictions"]
    assert prediction["model_version"] == "m1" and prediction["score"] == pytest.approx(0.7)
    assert prediction["result"] == [
        {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["space"]}}
    ]
    assert "predictions" not in tasks[0]


def test_cold_start_picks_text_records_over_tfidf_embeddings():
    pool = _pool()
    plan = plan_next_batch(pool, {"t00"}, {}, budget=6, pool_embeddings=text_embedding_table(pool), kind="text")
    assert plan.strategy == "typiclust" and plan.embeddings == "tfidf-svd" and not plan.uses_model
    assert len(plan.record_ids) == 6 and "t00" not in plan.record_ids and "img" not in plan.record_ids
    topics = {"space" if int(rid[1:]) % 2 else "food" for rid in plan.record_ids}
    assert topics == {"space", "food"}  # typical picks cover both planted topics
    diverse = plan_next_batch(
        pool, set(), {}, budget=4, strategy="diversity", pool_embeddings=text_embedding_table(pool), kind="text"
    )
    assert diverse.embeddings == "tfidf-svd" and len(diverse.record_ids) == 4
    with pytest.raises(ValueError, match="text round's diversity needs pool embeddings"):
        plan_next_batch(pool, set(), {}, budget=4, strategy="diversity", kind="text")


def test_model_round_ranks_texts_by_uncertainty_in_the_models_space():
    pool = _pool()
    ids = [f"t{i:02d}" for i in range(20)]
    margin = np.linspace(0.0, 0.9, 20)  # t00 is the least sure
    probs = np.stack([(1 - margin) / 2, (1 + margin) / 2], axis=1)
    rng = np.random.default_rng(1)
    predictions = conform(
        pa.table(
            {
                "record_id": ids,
                "predicted_label": ["space"] * 20,
                "confidence": pa.array(probs.max(1), pa.float32()),
                "probs": pa.array(probs.tolist(), pa.list_(pa.float32())),
                "embedding": pa.array(rng.normal(size=(20, 8)).tolist(), pa.list_(pa.float32())),
            }
        ),
        PREDICTION_SCHEMA,
    )
    plan = plan_next_batch(pool, set(), {}, budget=4, predictions=predictions, model_version="m1", kind="text")
    assert plan.strategy == "hybrid" and plan.uses_model and plan.model_version == "m1"
    assert plan.embeddings == "model" and set(plan.record_ids) <= set(ids[:12])

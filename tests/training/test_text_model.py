"""The text classifier: hashed n-grams learn planted topics, publish a "text" model, score the pool, report."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from corpus.releases.build import build_release
from corpus.releases.config import ReleaseConfig
from corpus.schema import conform, make_record_id
from corpus.store import DataRoot
from pipelines.demo.sample_texts import TOPICS, make_topic_text, make_topic_title
from training.config import TrainConfig
from training.predict import predict_pool
from training.registry import load_model, read_metadata
from training.report import render_report
from training.text_model import HashedNgramClassifier, featurize, to_bag_inputs
from training.text_train import train_text_model


def make_text_records(per_topic: int, seed: int = 0, *, labeled: bool = True) -> pa.Table:
    """`per_topic` text records of each sample topic (RECORD_SCHEMA), labeled with their topic when asked."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(per_topic):
        for topic in TOPICS:
            text = make_topic_text(topic, rng)
            row = {
                "record_id": make_record_id(text.encode()),
                "kind": "text",
                "text": text,
                "title": make_topic_title(topic, rng),
                "lang": "en",
                "url": f"http://site.test/{topic}/{seed}-{i}",
                "page_url": f"http://site.test/{topic}/{seed}-{i}",
            }
            if labeled:
                row.update(label=topic, label_source="human", label_confidence=1.0, annotators=["sim-1"])
            rows.append(row)
    return conform(pa.Table.from_pylist(rows))


@pytest.fixture(scope="module")
def text_root(tmp_path_factory) -> DataRoot:
    root = DataRoot(str(tmp_path_factory.mktemp("texts")))
    build_release(root, "topics", make_text_records(20), ReleaseConfig(task="text"))
    return root


@pytest.fixture(scope="module")
def text_trained(text_root: DataRoot) -> dict:
    return train_text_model(text_root, "topics", "latest", TrainConfig(epochs=15, batch_size=16, lr=0.05, seed=0))


def test_featurize_hashes_words_and_characters_per_half():
    rows = featurize(pa.table({"title": ["Comet"], "text": ["a comet orbit"]}), hash_bits=10)
    assert rows.shape == (1, 2 * 2**10)
    words, chars = rows[:, : 2**10], rows[:, 2**10 :]
    assert words.nnz >= 4 and chars.nnz > words.nnz  # comet, a, orbit (+ bigrams); many 3-5 grams
    assert np.isclose(np.linalg.norm(words.toarray()), 1.0) and np.isclose(np.linalg.norm(chars.toarray()), 1.0)


def test_model_embeds_and_classifies_a_batch():
    model = HashedNgramClassifier(3, hash_bits=8, dim=5)
    rows = featurize(pa.table({"text": ["one two", "three", ""]}), hash_bits=8)
    emb = model.embed(*to_bag_inputs(rows))
    assert emb.shape == (3, 5) and model(*to_bag_inputs(rows)).shape == (3, 3)
    assert float(emb[2].detach().abs().sum()) == 0.0  # an empty text is the zero vector, not an error


def test_text_release_trains_a_text_model_that_learns_the_topics(text_trained: dict, text_root: DataRoot):
    meta = read_metadata(text_root, text_trained["model_version"])
    assert meta["task"] == "text" and meta["model"]["arch"] == "HashedNgramClassifier"
    assert meta["labels"] == sorted(TOPICS)
    assert meta["test_accuracy"] >= 0.8, meta["test_accuracy"]
    assert set(meta["per_class_metrics"]) == set(TOPICS)
    assert all({"precision", "recall", "f1"} <= set(m) for m in meta["per_class_metrics"].values())
    assert meta["eval_set"]["accuracy"] is not None and meta["eval_by_version"][-1]["current"]
    report = render_report(meta)
    assert "HashedNgramClassifier" in report and "astronomy" in report
    model, _ = load_model(text_root, text_trained["model_version"])
    assert isinstance(model, HashedNgramClassifier)


def test_pool_predictions_cover_text_rows_only(text_trained: dict, text_root: DataRoot):
    pool = make_text_records(5, seed=7, labeled=False)
    image = conform(pa.table({"record_id": ["img"], "kind": ["image"], "image": [b"\x89PNG"]}))
    predictions = predict_pool(text_root, text_trained["model_version"], pa.concat_tables([pool, image]))
    assert predictions.num_rows == pool.num_rows
    assert "img" not in predictions.column("record_id").to_pylist()
    probs = np.asarray(predictions.column("probs").to_pylist())
    assert probs.shape == (pool.num_rows, 4) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert len(predictions.column("embedding")[0].as_py()) == 32
    truth = [url.split("/")[3] for url in pool.column("url").to_pylist()]
    hits = np.mean([p == t for p, t in zip(predictions.column("predicted_label").to_pylist(), truth, strict=True)])
    assert hits >= 0.8, hits


def test_a_second_release_is_compared_with_the_first_model(text_trained: dict, text_root: DataRoot):
    records = pa.concat_tables([make_text_records(20), make_text_records(5, seed=3)])
    build_release(text_root, "topics", records, ReleaseConfig(task="text"))
    second = train_text_model(text_root, "topics", "latest", TrainConfig(epochs=3, batch_size=16, lr=0.05))
    earlier = [row for row in second["eval_by_version"] if not row.get("current")]
    assert earlier and earlier[0]["model_version"] == text_trained["model_version"]
    assert earlier[0]["accuracy"] is not None

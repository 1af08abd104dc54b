"""The sample site's text pages: four topics told apart by their words, not by one keyword, with their truth."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from corpus.store import DataRoot
from pipelines.demo.flow import _truth_by_record, write_demo_gold
from pipelines.demo.sample_site import generate_site
from pipelines.demo.sample_texts import FILLER, TOPIC_WORDS, TOPICS, make_topic_text


def test_paragraphs_mix_topic_words_filler_and_crosstalk():
    rng = np.random.default_rng(0)
    words = [w.strip(".").lower() for w in " ".join(make_topic_text("cooking", rng) for _ in range(20)).split()]
    own = sum(w in TOPIC_WORDS["cooking"] for w in words) / len(words)
    other = sum(any(w in TOPIC_WORDS[t] for t in TOPICS if t != "cooking") for w in words) / len(words)
    filler = sum(w in FILLER for w in words) / len(words)
    assert 0.25 < own < 0.42 and 0.08 < other < 0.22 and filler > 0.4
    assert make_topic_text("cooking", np.random.default_rng(1)) == make_topic_text("cooking", np.random.default_rng(1))


def test_text_pages_are_linked_with_their_topics_in_the_truth(tmp_path):
    truth = generate_site(tmp_path / "a", seed=3, images_per_class=4, text_pages_per_topic=2)
    topics = {path: page["topic"] for path, page in truth["pages"].items() if page.get("topic")}
    assert sorted(topics.values()) == sorted(TOPICS * 2) and truth["topics"] == list(TOPICS)
    index = (tmp_path / "a/site/index.html").read_text()
    assert all(f'href="{path}"' in index for path in topics)
    page = (tmp_path / "a/site" / next(iter(topics)).lstrip("/")).read_text()
    assert page.count("    <p>") == 2  # two paragraphs in the article (the footer has its own)
    plain = generate_site(tmp_path / "b", seed=3, images_per_class=4)
    assert "topics" not in plain and "/articles/" not in (tmp_path / "b/site/index.html").read_text()


def test_text_truth_and_gold_cover_text_records_only(tmp_path):
    truth = generate_site(tmp_path / "site", seed=3, images_per_class=4, text_pages_per_topic=1)
    path = next(p for p, page in truth["pages"].items() if page.get("topic"))
    image_path = next(iter(truth["images"]))
    root = DataRoot(str(tmp_path / "root"))
    pool = pa.table(
        {
            "record_id": ["t1", "g1", "i1"],
            "kind": ["text", "text", "image"],
            "url": [f"http://127.0.0.1:1{path}", "http://127.0.0.1:1/index.html", f"http://127.0.0.1:1{image_path}"],
        }
    )
    root.write_table("pool.parquet", pool)
    truth_path = str(tmp_path / "site/truth.json")
    assert _truth_by_record(root.url, "pool.parquet", truth_path, "text") == {"t1": truth["pages"][path]["topic"]}
    assert set(_truth_by_record(root.url, "pool.parquet", truth_path)) <= {"i1"}
    gold = write_demo_gold(root.url, "pool.parquet", truth_path, 5, "text")
    assert json.loads(root.read_bytes(gold)) == {"t1": truth["pages"][path]["topic"]}

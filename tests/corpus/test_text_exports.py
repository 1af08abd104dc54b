"""Text releases: exported as csv, hf (read by the real `datasets`) and jsonl, refused by the image formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from corpus.exports.export import export_release, verify_export
from corpus.releases.build import build_release
from corpus.releases.config import ReleaseConfig
from corpus.schema import conform, make_record_id
from corpus.store import DataRoot
from corpus.text_features import compute_text_embeddings, text_embedding_table

TOPICS = {"space": "orbit comet galaxy planet", "food": "oven flour garlic butter"}


def _records(n: int = 12) -> pa.Table:
    rows = []
    for i in range(n):
        label = "space" if i % 2 else "food"
        text = f'{TOPICS[label]} page {i}, with a comma and "quotes"\nand a second line'
        rows.append(
            {
                "record_id": make_record_id(text.encode()),
                "kind": "text",
                "text": text,
                "title": f"Page {i}",
                "page_url": f"http://site.test/{i}",
                "url": f"http://site.test/{i}",
                "label": label,
                "label_source": "human",
                "label_confidence": 1.0,
                "annotators": ["a"],
            }
        )
    return conform(pa.Table.from_pylist(rows))


@pytest.fixture(scope="module")
def text_release(tmp_path_factory) -> DataRoot:
    root = DataRoot(str(tmp_path_factory.mktemp("text-release")))
    manifest = build_release(root, "topics", _records(), ReleaseConfig(task="text"))
    assert manifest["task"] == "text"
    return root


def test_csv_and_jsonl_hold_every_text_and_label(text_release: DataRoot):
    texts = dict(zip(_records().column("record_id").to_pylist(), _records().column("text").to_pylist(), strict=True))
    found = {}
    for fmt in ("csv", "jsonl"):
        out = export_release(text_release, "topics", "latest", fmt)
        assert verify_export(text_release, f"exports/topics/v0001/{fmt}")["format"] == fmt
        assert sum(out["splits"].values()) == len(texts)
        for split in out["splits"]:
            path = text_release.path(f"exports/topics/v0001/{fmt}/{split}.{fmt}")
            if fmt == "csv":
                rows = pacsv.read_csv(path).to_pylist()
            else:
                lines = Path(path).read_text(encoding="utf-8").splitlines()
                rows = [json.loads(line) for line in lines if line.strip()]
            for row in rows:
                assert row["label"] in TOPICS and row["text"] == texts[row["record_id"]]
                found[(fmt, row["record_id"])] = row["label"]
    assert len(found) == 2 * len(texts)


def test_hf_export_loads_as_strings_and_class_labels(text_release: DataRoot, tmp_path):
    datasets = pytest.importorskip("datasets")
    export_release(text_release, "topics", "latest", "hf")
    # Its own cache: datasets caches by path, and pytest's temp folders are shared by every run on the machine.
    loaded = datasets.load_dataset(text_release.path("exports/topics/v0001/hf"), cache_dir=str(tmp_path / "cache"))
    assert set(loaded) == {"train", "validation", "test"}
    train = loaded["train"]
    assert train.features["text"].dtype == "string"
    assert train.features["label"].names == ["food", "space"]
    total = sum(loaded[s].num_rows for s in loaded)
    names = train.features["label"]
    assert total == 12 and all(TOPICS[names.int2str(r["label"])].split()[0] in r["text"] for r in train)


@pytest.mark.parametrize("fmt", ["imagefolder", "webdataset", "coco", "yolo"])
def test_image_formats_refuse_a_text_release_in_one_line(text_release: DataRoot, fmt: str):
    with pytest.raises(ValueError, match=f"a text release cannot be exported as {fmt}") as refused:
        export_release(text_release, "topics", "latest", fmt)
    assert "\n" not in str(refused.value)
    assert not text_release.exists(f"exports/topics/v0001/{fmt}")


def test_jsonl_refuses_an_image_release(tmp_path):
    root = DataRoot(str(tmp_path))
    image = conform(
        pa.table({"record_id": ["i1"], "kind": ["image"], "image": [b"\x89PNG\r\n\x1a\n"], "label": ["cat"]})
    )
    build_release(root, "pics", image, ReleaseConfig())
    with pytest.raises(ValueError, match="jsonl exports text releases only"):
        export_release(root, "pics", "latest", "jsonl")


def test_card_previews_texts_instead_of_thumbnails(text_release: DataRoot):
    card = text_release.read_bytes("releases/topics/v0001/card.html").decode()
    assert "orbit comet galaxy" in card and "no images" not in card


def test_text_embeddings_separate_planted_topics():
    docs = [f"{TOPICS['space']} {i}" for i in range(6)] + [f"{TOPICS['food']} {i}" for i in range(6)]
    emb = compute_text_embeddings(docs)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    sims = emb @ emb.T
    same, other = sims[:6, :6].mean(), sims[:6, 6:].mean()
    assert same > other + 0.3, (same, other)
    table = text_embedding_table(_records())
    assert table.schema.metadata[b"flywheel.encoder"] == b"tfidf-svd" and table.num_rows == 12

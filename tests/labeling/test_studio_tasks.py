"""Task conversion: the labeling config parses, media are written once, tasks and predictions are well formed."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import pyarrow as pa
import pytest
from PIL import Image

from corpus.schema import PREDICTION_SCHEMA, conform, make_record_id
from corpus.store import DataRoot
from labeling.label_config import build_label_config
from labeling.studio_tasks import build_predictions, build_tasks, export_media


def _encoded(fmt: str, color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), color).save(buf, format=fmt)
    return buf.getvalue()


def _records() -> pa.Table:
    jpg, png = _encoded("JPEG", (200, 0, 0)), _encoded("PNG", (0, 200, 0))
    return conform(
        pa.table(
            {
                "record_id": [make_record_id(jpg), make_record_id(png), "text-record", "no-bytes"],
                "kind": ["image", "image", "text", "image"],
                "image": [jpg, png, None, None],
                "mime": ["image/jpeg", None, None, "image/png"],
                "caption": ["a red square", None, None, None],
                "page_url": ["http://127.0.0.1/p1", "http://127.0.0.1/p2", None, None],
            }
        )
    )


def test_label_config_parses_with_escaped_labels() -> None:
    config = build_label_config(["cat", "dog & fox", 'say "hi"'])
    root = ET.fromstring(config)
    assert root.find("Image").get("value") == "$image"
    assert root.find("Text").get("value") == "$caption"
    choices = root.find("Choices")
    assert choices.get("name") == "label" and choices.get("toName") == "image" and choices.get("choice") == "single"
    assert [c.get("value") for c in choices.findall("Choice")] == ["cat", "dog & fox", 'say "hi"']
    with pytest.raises(ValueError, match="unique"):
        build_label_config(["cat", "cat"])


def test_media_written_once_and_tasks_point_at_them(tmp_path) -> None:
    root = DataRoot(str(tmp_path))
    table = _records()
    ids = table.column("record_id").to_pylist()
    paths = export_media(root, table)
    assert paths == {ids[0]: f"media/{ids[0]}.jpg", ids[1]: f"media/{ids[1]}.png"}
    assert root.read_bytes(paths[ids[1]]) == table.column("image")[1].as_py()
    mtime = (tmp_path / paths[ids[0]]).stat().st_mtime_ns
    assert export_media(root, table) == paths
    assert (tmp_path / paths[ids[0]]).stat().st_mtime_ns == mtime  # skipped, not rewritten

    tasks = build_tasks(table, paths, priorities={ids[0]: 0.75})
    assert [t["data"]["record_id"] for t in tasks] == ids[:2]
    assert tasks[0]["data"] == {
        "image": f"/data/local-files/?d=media/{ids[0]}.jpg",
        "record_id": ids[0],
        "caption": "a red square",
        "page_url": "http://127.0.0.1/p1",
        "priority": 0.75,
    }
    assert tasks[1]["data"]["priority"] is None and tasks[1]["data"]["caption"] == ""


def test_unknown_image_type_is_named(tmp_path) -> None:
    gif = {"record_id": ["gif1"], "kind": ["image"], "image": [b"GIF89a..."], "mime": ["image/gif"]}
    table = conform(pa.table(gif))
    with pytest.raises(ValueError, match="record gif1"):
        export_media(DataRoot(str(tmp_path)), table)


def test_predictions_only_for_tasks_and_known_labels() -> None:
    preds = pa.Table.from_pylist(
        [
            {"record_id": "r1", "predicted_label": "cat", "confidence": 0.9, "probs": [0.9, 0.1]},
            {"record_id": "r2", "predicted_label": "dog", "confidence": 0.6, "probs": [0.4, 0.6]},
            {"record_id": "not-a-task", "predicted_label": "dog", "confidence": 0.6, "probs": [0.4, 0.6]},
        ],
        schema=PREDICTION_SCHEMA,
    )
    out = build_predictions({"r1": 11, "r2": 12}, preds, ["cat", "dog"], "m-v1")
    assert [p["task"] for p in out] == [11, 12]
    assert out[0]["model_version"] == "m-v1" and out[0]["score"] == pytest.approx(0.9)
    assert out[1]["result"] == [
        {"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": ["dog"]}}
    ]
    with pytest.raises(ValueError, match="not one of"):
        build_predictions({"r2": 12}, preds, ["cat", "bird"], "m-v1")


def test_build_tasks_can_carry_predictions_inline() -> None:
    table = conform(pa.table({"record_id": ["a", "b"], "kind": ["image", "image"]}))
    preds = pa.Table.from_pylist(
        [{"record_id": "a", "predicted_label": "cat", "confidence": 0.75}], schema=PREDICTION_SCHEMA
    )
    tasks = build_tasks(
        table, {"a": "media/a.png", "b": "media/b.png"}, predictions=preds, labels=["cat", "dog"], model_version="m2"
    )
    by_id = {t["data"]["record_id"]: t for t in tasks}
    (pred,) = by_id["a"]["predictions"]
    assert pred["model_version"] == "m2" and pred["score"] == 0.75
    assert pred["result"][0]["value"]["choices"] == ["cat"] and "task" not in pred
    assert "predictions" not in by_id["b"]
    with pytest.raises(ValueError, match="model_version"):
        build_tasks(table, {"a": "media/a.png"}, predictions=preds, labels=["cat"])

"""The detect demo's parts: box truth matched to pool records by URL, a fixed gold draw, detect figures shown."""

from __future__ import annotations

import re
from pathlib import Path

from corpus.pool import read_box_gold
from corpus.store import DataRoot
from pipelines.demo.object_demo import (
    BOX_GOLD_PATH,
    box_truth_by_record,
    choose_box_gold,
    write_demo_box_gold,
)
from pipelines.demo.sample_objects import generate_object_site
from pipelines.demo.summary import build_summary, render_summary

BOX = {"label": "circle", "x": 1.0, "y": 2.0, "w": 10.0, "h": 12.0, "score": None}


def test_box_truth_follows_the_url_path_not_the_record_id(tmp_path: Path) -> None:
    truth = generate_object_site(tmp_path, n=3, seed=1)
    paths = sorted(truth["objects"])
    records = [
        {"record_id": "scrubbed-1", "url": f"http://127.0.0.1:9/{paths[0].lstrip('/')}", "width": 96, "height": 80},
        {"record_id": "scrubbed-2", "url": f"http://127.0.0.1:9{paths[1]}?x=1", "width": None, "height": None},
        {"record_id": "page", "url": "http://127.0.0.1:9/objects.html", "width": None, "height": None},
        {"record_id": "no-url", "url": None, "width": None, "height": None},
    ]
    known = box_truth_by_record(records, truth)
    assert sorted(known) == ["scrubbed-1", "scrubbed-2"]
    boxes, size = known["scrubbed-1"]
    assert size == (96, 80) and known["scrubbed-2"][1] == (96, 96)  # the generated side when the record has none
    expected = truth["objects"][paths[0]]["boxes"]
    assert [b["label"] for b in boxes] == [b["label"] for b in expected]
    assert [b["x"] for b in boxes] == [b["x"] for b in expected] and set(boxes[0]) == {"label", "x", "y", "w", "h"}


def test_gold_is_a_fixed_draw_of_the_known_images_that_the_pipeline_reads_back(tmp_path: Path) -> None:
    known = {f"r{i}": ([BOX | {"x": float(i)}], (96, 96)) for i in range(10)}
    gold = choose_box_gold(known, 4)
    assert len(gold) == 4 and gold == choose_box_gold(known, 4) and set(gold) <= set(known)
    assert all(gold[rid] == known[rid][0] for rid in gold)
    root = DataRoot(str(tmp_path))
    assert write_demo_box_gold(root.url, known, 0) is None
    assert write_demo_box_gold(root.url, known, 4) == BOX_GOLD_PATH
    assert {rid: [b["x"] for b in boxes] for rid, boxes in read_box_gold(root, BOX_GOLD_PATH).items()} == {
        rid: [b["x"] for b in boxes] for rid, boxes in gold.items()
    }


def _ingest() -> dict:
    return {
        "crawl": {"pages": 2, "images": 3},
        "curate": {"kept": 3, "counters": {}, "dropped_by_reason": {}, "output": "c"},
        "scrub": {"counters": {}, "output": "s"},
    }


def test_a_detect_summary_shows_box_f1_and_map_instead_of_accuracy() -> None:
    round_ = {
        "round": 1, "strategy": "diversity", "model_version": None, "tasks_pushed": 5, "predictions_pushed": 0,
        "annotations": 9, "labeled_records": 5, "agreement": {"box_f1": 0.81, "pairs": 3}, "gold": ["g"],
        "gold_box_f1": 0.9, "task": "detect", "project_id": 1, "project_url": "http://ls/projects/1",
    }  # fmt: skip
    model = {"model_version": "m1", "release": "v0001", "task": "detect", "test_map_50": 0.5, "test_map_50_95": 0.25}
    release = {"version": "v0001", "rows": {"train": 4}, "task": "detect"}
    summary = build_summary(_ingest(), [round_], [release], [model | {"device": "cpu"}])
    (shown_round,), (shown_model,) = summary["label_rounds"], summary["models"]
    assert shown_round["box_f1"] == 0.81 and shown_round["gold_box_f1"] == 0.9 and shown_round["agreement"] is None
    assert shown_model["test_map_50"] == 0.5 and shown_model["test_map_50_95"] == 0.25
    assert shown_model["test_accuracy"] is None and summary["releases"][0]["task"] == "detect"
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(render_summary(summary))
    text = console.export_text()
    assert "test mAP@0.5 0.500, mAP@[.5:.95] 0.250" in text and "box F1 0.810, gold box F1 0.900" in text


def test_a_classify_summary_keeps_its_shape() -> None:
    round_ = {
        "round": 1, "strategy": "diversity", "model_version": None, "tasks_pushed": 5, "predictions_pushed": 0,
        "annotations": 9, "labeled_records": 5, "agreement": {"percent_agreement": 0.8}, "gold": [],
        "task": "classify", "project_id": 1, "project_url": None,
    }  # fmt: skip
    model = {"model_version": "m1", "release": "v0001", "test_accuracy": 0.75, "device": "cpu"}
    summary = build_summary(_ingest(), [round_], [{"version": "v0001", "rows": {}}], [model])
    assert "box_f1" not in summary["label_rounds"][0] and "test_map_50" not in summary["models"][0]
    assert summary["models"][0]["test_accuracy"] == 0.75 and "task" not in summary["releases"][0]


def test_the_object_gallery_spreads_its_images_over_pages_linked_from_the_index(tmp_path: Path) -> None:
    truth = generate_object_site(tmp_path, n=12, seed=2)
    site = tmp_path / "site"
    pages = ["objects.html", "objects-2.html", "objects-3.html"]
    index = (site / "index.html").read_text()
    assert all(f'href="/{page}"' in index for page in pages) and not (site / "objects-4.html").exists()
    shown = [src for page in pages for src in re.findall(r'src="([^"]+)"', (site / page).read_text())]
    assert [len(re.findall("<img", (site / page).read_text())) for page in pages] == [5, 5, 2]
    assert sorted(shown) == sorted(truth["objects"])  # each image on exactly one page

"""The detect demo's parts: the object site's box truth per pool record, its box gold, and the gate its crowd meets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from corpus.store import open_data_root
from labeling.gate import QualityGate
from pipelines.demo.sample_objects import OBJECT_SIZE

BOX_GOLD_PATH = "demo/box-gold.json"
# The demo crowd (5/10/20% errors: box_annotators.box_noise_for) draws boxes matching each other and the gold
# at F1 ~0.8 and up; 0.6 (as tests/pipelines/test_detect_round.py) passes them and fails a crowd that guesses.
# 10 new images fit the small budgets of the end-to-end test.
DETECT_DEMO_GATE = QualityGate(min_box_f1=0.6, min_gold_box_f1=0.6, min_new_labels=10)

BoxTruth = dict[str, tuple[list[dict[str, Any]], tuple[int, int]]]


def box_truth_by_record(records: list[dict[str, Any]], truth: dict[str, Any]) -> BoxTruth:
    """record_id -> (true boxes, (width, height)) of the pool records (dicts with record_id, url, width,
    height) whose URL path is an image of the object site's truth (sample_objects.object_truth). Matched by
    URL, since scrubbing may re-encode an image and so change its record id."""
    objects = truth["objects"]
    found: BoxTruth = {}
    for record in records:
        entry = objects.get(urlsplit(record.get("url") or "").path)
        if entry is None:
            continue
        size = (int(record.get("width") or OBJECT_SIZE), int(record.get("height") or OBJECT_SIZE))
        found[record["record_id"]] = (
            [{k: box[k] for k in ("label", "x", "y", "w", "h")} for box in entry["boxes"]],
            size,
        )
    return found


def choose_box_gold(known: BoxTruth, count: int, seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    """`count` of the known images (a fixed draw for a seed) with their true boxes: the gold a lead would draw
    up front (corpus.pool.read_box_gold's format)."""
    ids = sorted(known)
    picked = np.random.default_rng(seed).permutation(len(ids))[:count]
    return {ids[i]: known[ids[i]][0] for i in sorted(picked)}


def read_pool_box_truth(data_root: str, pool: str, truth_path: str) -> BoxTruth:
    """box_truth_by_record over the pool under `data_root`, from the truth file at `truth_path`."""
    records = open_data_root(data_root).read_table(pool).select(["record_id", "url", "width", "height"]).to_pylist()
    return box_truth_by_record(records, json.loads(Path(truth_path).read_text()))


def write_demo_box_gold(data_root: str, known: BoxTruth, count: int) -> str | None:
    """The detect demo's gold file under the data root (choose_box_gold); the pipeline reads only it, never
    the truth. None when `count` is 0."""
    if count == 0:
        return None
    open_data_root(data_root).write_json(BOX_GOLD_PATH, choose_box_gold(known, count))
    return BOX_GOLD_PATH

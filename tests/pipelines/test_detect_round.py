"""A detect round end to end against real Label Studio and Prefect: shapes at known boxes pushed as a
RectangleLabels round, drawn by the simulated crowd with known noise, pulled, closed on its box gate, released
with fused boxes and exported as COCO that pycocotools reads; a box one annotator left out is flagged."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from pycocotools.coco import COCO

from corpus.boxes import box_set_from_rows, compute_iou
from corpus.schema import conform
from corpus.store import DataRoot
from labeling.box_fusion import match_boxes
from labeling.client import LabelStudioClient
from labeling.gate import QualityGate
from labeling.round_store import load_round
from labeling.sync import extract_boxes
from pipelines.config import LabelRoundParams, ReleaseParams
from pipelines.demo.annotators import SimulatedAnnotator
from pipelines.demo.box_annotators import box_result
from pipelines.demo.crowd import SimulatedCrowd
from pipelines.demo.sample_objects import OBJECT_CLASSES, OBJECT_SIZE, generate_object_images
from pipelines.release import release_flow
from pipelines.round_close import label_check_flow, label_close_flow
from pipelines.rounds import label_push_flow

pytestmark = [pytest.mark.labelstudio, pytest.mark.prefect, pytest.mark.timeout(900)]
CROWD = [SimulatedAnnotator("careful", 0.05), SimulatedAnnotator("ordinary", 0.1), SimulatedAnnotator("sloppy", 0.2)]
# A gate a 14-image round can be judged by: box F1 between annotators and on gold, 8 new images.
BOX_GATE = QualityGate(min_box_f1=0.6, min_gold_box_f1=0.6, min_new_labels=8)


def _write_pool(root: DataRoot, images) -> str:
    rows = [
        {
            "record_id": im.record_id,
            "kind": "image",
            "url": f"http://127.0.0.1/objects/{im.name}",
            "image": im.png,
            "width": OBJECT_SIZE,
            "height": OBJECT_SIZE,
            "mime": "image/png",
            "near_dup_cluster": im.record_id,
        }
        for im in images
    ]
    root.write_table("curated/objects/kept/part-0000.parquet", conform(pa.Table.from_pylist(rows)))
    return "curated/objects/kept"


def _wait_for(crowd: SimulatedCrowd, needed: int, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while crowd.answered < needed and time.monotonic() < deadline:
        time.sleep(0.5)
    assert crowd.answered >= needed, f"the crowd drew {crowd.answered} of {needed} answers"


def _plant_missed_box(client: LabelStudioClient, project_id: int, user_id: int) -> tuple[int, dict]:
    """Remove from `user_id`'s answer one box that both other annotators drew too (so the consensus keeps it);
    returns (its task id, the box removed)."""
    for task in client.list_annotated_tasks(project_id):
        drawn = {a["completed_by"]: (a["id"], extract_boxes(a["result"], detect=True)) for a in task["annotations"]}
        if user_id not in drawn or len(drawn) < 3:
            continue
        annotation_id, mine = drawn[user_id]
        others = [box_set_from_rows(boxes) for who, (_, boxes) in drawn.items() if who != user_id]
        for i, box in enumerate(mine):
            single = box_set_from_rows([box])
            if all(len(match_boxes(single, other, 0.7, same_label=True)[0]) for other in others):
                kept = [b for j, b in enumerate(mine) if j != i]
                client.update_annotation(annotation_id, box_result(kept, (OBJECT_SIZE, OBJECT_SIZE)))
                return int(task["id"]), box
    raise AssertionError("no box all three annotators drew")


def test_a_detect_round_is_drawn_judged_on_boxes_and_released_with_fused_boxes(studio, tmp_path: Path) -> None:
    root = DataRoot(str(studio.document_root))
    images = generate_object_images(16, seed=5)
    truth = {im.record_id: im.boxes for im in images}
    pool = _write_pool(root, images)
    root.write_json("objects/gold.json", {im.record_id: im.boxes for im in images[:2]})
    params = LabelRoundParams(
        dataset="shapes",
        pool=pool,
        labels=list(OBJECT_CLASSES),
        task="detect",
        project_title="Flywheel shapes",
        budget=12,
        gold_path="objects/gold.json",
        gold_per_round=2,
        overlap_fraction=1.0,
        overlap_k=3,
        annotators=3,
        min_per_class=0,
        gate=BOX_GATE,
        data_root=root.url,
    )
    opened = label_push_flow(params)
    assert opened["opened"] and opened["tasks"] == 14 and opened["gold"] == 2
    client = LabelStudioClient(studio.url, studio.token)
    assert "<RectangleLabels" in client.get_project(opened["project_id"])["label_config"]

    sizes = (OBJECT_SIZE, OBJECT_SIZE)
    crowd = SimulatedCrowd(
        client, root, "shapes", lambda rid: None, list(OBJECT_CLASSES), CROWD, pace_s=0.0, seed=3,
        box_truth=lambda rid: (truth[rid], sizes) if rid in truth else None,
    )  # fmt: skip
    with crowd:
        _wait_for(crowd, 14 * 3)
    planted_task, planted_box = _plant_missed_box(
        client, opened["project_id"], client.ensure_user("careful", CROWD[0].email)
    )
    (checked,) = label_check_flow(dataset="shapes", data_root=root.url)
    assert checked["due"] == "complete" and checked["done"] == checked["needed"] == 42

    closed = label_close_flow(dataset="shapes", reason="complete", data_root=root.url)
    assert closed["passed"], closed["reasons"]
    assert [c["name"] for c in closed["verdict"]["criteria"]] == ["box_f1", "gold_box_f1", "new_labels"]
    summary = closed["summary"]
    assert summary["annotations"] == 42 and summary["labeled_records"] == 14 and summary["new_labels"] == 12
    assert {c["annotator"] for c in summary["scorecards"]} == {"careful", "ordinary", "sloppy"}
    assert all(c["gold_items"] == 2 for c in summary["scorecards"])
    careful = next(c for c in summary["scorecards"] if c["annotator"] == "careful")
    assert careful["missing"] >= 1
    # the review tab names the box the careful annotator left out
    reviewed = next(t for t in client.list_tasks(opened["project_id"]) if t["id"] == planted_task)["data"]
    assert "box missing" in reviewed["review_reasons"], reviewed

    manifest = release_flow(
        ReleaseParams(
            dataset="shapes", pool=pool, gold_path="objects/gold.json", round=1, exports=["coco"], data_root=root.url
        )
    )
    assert manifest["task"] == "detect" and set(manifest["labels"]) <= set(OBJECT_CLASSES) and manifest["labels"]
    assert sum(manifest["rows"].values()) == 14 and manifest["rows"]["val"] > 0
    released = sum(sum(per.values()) for per in manifest["box_counts"].values())
    assert released > 0 and load_round(root, "shapes", 1).status == "released"

    matched = total = 0
    coco_dir = Path(manifest["exports"]["coco"].removeprefix("file://"))
    for split in ("train", "val", "test"):
        path = coco_dir / "annotations" / f"instances_{split}.json"
        if not path.exists():
            continue
        coco = COCO(str(path))
        names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
        for image in coco.loadImgs(coco.getImgIds()):
            record_id = Path(image["file_name"]).stem
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
            fused = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                              for a in anns]).reshape(-1, 4)  # fmt: skip
            labels = np.array([names[a["category_id"]] for a in anns], dtype=object)
            true = box_set_from_rows(truth[record_id])
            iou = compute_iou(true.xyxy, fused)
            same = true.labels[:, None] == labels[None, :]
            total += len(true.xyxy)
            matched += int(((iou >= 0.7) & same).any(axis=1).sum()) if iou.size else 0
    assert total == sum(len(truth[rid]) for rid in opened["record_ids"])
    assert matched >= 0.8 * total, f"{matched} of {total} true boxes found at IoU >= 0.7"
    assert planted_box["label"] in OBJECT_CLASSES

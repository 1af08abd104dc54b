"""Boxes in Label Studio: the RectangleLabels config, results in percent both ways, and a real server's round trip."""

from __future__ import annotations

import numpy as np
import pytest

from corpus.boxes import build_boxes
from labeling.box_results import boxes_from_studio_result, boxes_to_studio_result
from labeling.client import LabelStudioClient
from labeling.label_config import build_box_label_config, config_labels

BOXES = build_boxes(np.array([[10, 20, 30, 40], [100, 0, 100, 100]]), ["cat", "dog"], 200, 100)


def test_box_config_lists_the_labels_and_forbids_rotation() -> None:
    config = build_box_label_config(["cat", "a & b"])
    assert '<RectangleLabels name="label" toName="image" canRotate="false"' in config
    assert config_labels(config) == ["cat", "a & b"]
    with pytest.raises(ValueError, match="unique"):
        build_box_label_config(["cat", "cat"])


def test_result_is_in_percent_of_the_image_and_reads_back_unchanged() -> None:
    result = boxes_to_studio_result(BOXES, 200, 100, from_name="label", to_name="image")
    assert result[0] == {
        "id": "label-0",
        "type": "rectanglelabels",
        "from_name": "label",
        "to_name": "image",
        "original_width": 200,
        "original_height": 100,
        "image_rotation": 0,
        "value": {"x": 5.0, "y": 20.0, "width": 15.0, "height": 40.0, "rotation": 0, "rectanglelabels": ["cat"]},
    }
    back, width, height = boxes_from_studio_result(result)
    assert (back, width, height) == (BOXES, 200, 100)
    scored = boxes_to_studio_result([{**BOXES[0], "score": 0.75}], 200, 100)
    assert scored[0]["score"] == 0.75
    assert boxes_from_studio_result(scored)[0][0]["score"] == 0.75


def test_a_rotated_rectangle_becomes_the_box_around_it_and_other_tags_are_ignored() -> None:
    # 20x10 px turned 90 degrees clockwise about its top-left corner (50, 50): it covers x 40..50, y 50..70.
    turned = {
        "id": "r1",
        "type": "rectanglelabels",
        "from_name": "label",
        "original_width": 100,
        "original_height": 100,
        "value": {"x": 50, "y": 50, "width": 20, "height": 10, "rotation": 90, "rectanglelabels": ["cat"]},
    }
    choice = {"id": "c1", "type": "choices", "from_name": "quality", "value": {"choices": ["ok"]}}
    boxes, _, _ = boxes_from_studio_result([turned, choice])
    assert [round(boxes[0][k], 9) for k in ("x", "y", "w", "h")] == [40.0, 50.0, 10.0, 20.0]


def test_bad_results_name_the_item() -> None:
    item = boxes_to_studio_result(BOXES[:1], 200, 100)[0]
    with pytest.raises(ValueError, match="result label-0: needs exactly one label"):
        boxes_from_studio_result([{**item, "value": {**item["value"], "rectanglelabels": []}}])
    with pytest.raises(ValueError, match="result label-0: no original_width"):
        boxes_from_studio_result([{k: v for k, v in item.items() if k != "original_width"}])
    with pytest.raises(ValueError, match="result label-0: value needs numeric"):
        boxes_from_studio_result([{**item, "value": {"rectanglelabels": ["cat"]}}])
    with pytest.raises(ValueError, match=r"result label-0: .* outside"):
        boxes_from_studio_result([{**item, "value": {**item["value"], "x": 95.0}}])
    assert boxes_from_studio_result([], 64, 48) == ([], 64, 48)


@pytest.mark.labelstudio
def test_a_real_server_keeps_predicted_and_annotated_boxes(label_studio) -> None:
    client = LabelStudioClient(label_studio.url, label_studio.token)
    project = client.ensure_project("boxes round trip", build_box_label_config(["cat", "dog"]))
    [task] = client.import_tasks(project, [{"image": "/data/none.png", "record_id": "r-boxes"}])
    predicted = boxes_to_studio_result([{**b, "score": 0.5} for b in BOXES], 200, 100)
    prediction = {"task": task, "model_version": "m1", "score": 0.5, "result": predicted}
    assert client.import_predictions(project, [prediction])
    user = client.ensure_user("boxer", "boxer@flywheel.local")
    client.create_annotation(task, user, boxes_to_studio_result(BOXES[1:], 200, 100), lead_time=3.0)
    [listed] = [t for t in client.list_tasks(project) if t["id"] == task]
    assert boxes_from_studio_result(listed["predictions"][0]["result"])[0] == [{**b, "score": 0.5} for b in BOXES]
    assert boxes_from_studio_result(listed["annotations"][0]["result"])[0] == BOXES[1:]

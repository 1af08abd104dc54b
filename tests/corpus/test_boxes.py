"""The box schema: pixels and normalised coordinates agree, bad boxes are refused by index, the version is checked."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from corpus.boxes import (
    BOX_RELEASE_SCHEMA,
    box_set_from_rows,
    build_box_release_table,
    build_boxes,
    check_box_release_table,
    compute_iou,
    xywh_to_xyxy,
    xyxy_to_xywh,
)


def test_boxes_keep_pixels_and_normalised_coordinates() -> None:
    boxes = build_boxes(np.array([[10, 20, 30, 40], [0, 0, 200, 100]]), ["cat", "dog"], 200, 100)
    assert boxes[0] == {
        "label": "cat",
        "x": 10.0,
        "y": 20.0,
        "w": 30.0,
        "h": 40.0,
        "x_norm": 0.05,
        "y_norm": 0.2,
        "w_norm": 0.15,
        "h_norm": 0.4,
        "score": None,
    }
    assert boxes[1]["w_norm"] == boxes[1]["h_norm"] == 1.0
    one = box_set_from_rows(boxes)
    assert one.xyxy.tolist() == [[10, 20, 40, 60], [0, 0, 200, 100]]
    assert list(one.labels) == ["cat", "dog"] and one.scores.tolist() == [1.0, 1.0]
    assert xyxy_to_xywh(xywh_to_xyxy(np.array([[1.5, 2, 3, 4]]))).tolist() == [[1.5, 2, 3, 4]]


def test_a_box_overhanging_by_a_rounding_error_is_clipped_and_one_further_out_refused() -> None:
    clipped = build_boxes(np.array([[-0.5, 90, 20, 10.8]]), ["cat"], 200, 100)[0]
    assert (clipped["x"], clipped["w"], clipped["h"]) == (0.0, 19.5, 10.0)
    with pytest.raises(ValueError, match=r"box 1: .* outside the 200x100 image"):
        build_boxes(np.array([[0, 0, 5, 5], [190, 0, 20, 5]]), ["a", "b"], 200, 100)
    with pytest.raises(ValueError, match=r"box 0: .* no area"):
        build_boxes(np.array([[5, 5, 0, 5]]), ["a"], 200, 100)
    with pytest.raises(ValueError, match="box 0: score"):
        build_boxes(np.array([[5, 5, 5, 5]]), ["a"], 200, 100, scores=[1.5])
    with pytest.raises(ValueError, match="one label"):
        build_boxes(np.array([[5, 5, 5, 5]]), [], 200, 100)


def test_release_table_round_trips_through_parquet_and_its_version_is_checked(tmp_path) -> None:
    import pyarrow.parquet as pq

    boxes = [build_boxes(np.array([[10, 20, 30, 40]]), ["cat"], 200, 100), []]
    table = build_box_release_table(["r1", "r2"], [(200, 100), (64, 64)], boxes)
    pq.write_table(table, tmp_path / "boxes.parquet")
    back = pq.read_table(tmp_path / "boxes.parquet")
    check_box_release_table(back)
    # Parquet names a list's item `element`; the type (and so the check) is the same.
    assert back.schema.field("boxes").type == BOX_RELEASE_SCHEMA.field("boxes").type
    assert back["boxes"].to_pylist() == boxes
    with pytest.raises(ValueError, match="boxes schema version missing"):
        check_box_release_table(back.replace_schema_metadata({}))
    bad = [[{**boxes[0][0], "x_norm": 0.5}], []]
    with pytest.raises(ValueError, match="record r1: box 0 normalised"):
        check_box_release_table(build_box_release_table(["r1", "r2"], [(200, 100), (64, 64)], bad))
    with pytest.raises(ValueError, match="column 'boxes'"):
        check_box_release_table(table.drop_columns(["boxes"]).append_column("boxes", pa.array([1, 2])))


def test_iou_by_hand() -> None:
    iou = compute_iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]]))
    assert iou.tolist() == [[50 / 150, 0.0, 1.0]]
    assert compute_iou(np.zeros((0, 4)), np.array([[0, 0, 1, 1]])).shape == (0, 1)

"""Boxes follow the pixels: every transform of the box recipes moves a box exactly where geometry says it goes."""

from __future__ import annotations

import numpy as np
import pytest

from training.box_augment import BOX_RECIPES, augment_boxes, build_box_transforms, get_box_recipe

# albumentations moves boxes in float32, normalised to the image: "exact" is exact to that rounding.
ATOL_PX = 1e-4
IMAGE = np.zeros((60, 80, 3), dtype=np.uint8)  # height 60, width 80
BOX = [10.0, 20.0, 30.0, 10.0]  # coco: x, y, w, h -> corners x 10..40, y 20..30


def _one(entry: dict, box_format: str = "coco", box: list[float] = BOX, image: np.ndarray = IMAGE):
    transform = build_box_transforms([entry], 64, seed=7, box_format=box_format, save_applied_params=True)
    out = transform(image=image, bboxes=np.array([box]), labels=["cat"])
    return out["image"].shape[:2], np.asarray(out["bboxes"]).tolist(), out["labels"], out["applied_transforms"][0][1]


# Each case: a transform with fixed parameters and the box worked out by hand on the 80x60 image.
CASES = {
    # x -> W - x: corners 10..40 become 40..70.
    "HorizontalFlip": ({"__class_fullname__": "HorizontalFlip", "p": 1.0}, (60, 80), [40, 20, 30, 10]),
    # y -> H - y: corners 20..30 become 30..40.
    "VerticalFlip": ({"__class_fullname__": "VerticalFlip", "p": 1.0}, (60, 80), [10, 30, 30, 10]),
    # The crop's origin (5, 10) is subtracted.
    "Crop": (
        {"__class_fullname__": "Crop", "x_min": 5, "y_min": 10, "x_max": 45, "y_max": 50},
        (40, 40),
        [5, 10, 30, 10],
    ),
    # 80x60 -> 40x30 halves every coordinate.
    "Resize": ({"__class_fullname__": "Resize", "height": 30, "width": 40, "p": 1.0}, (30, 40), [5, 10, 15, 5]),
    # Scale 2 about the centre (40, 30): x 10..40 -> -20..40, clipped to 0..40; y 20..30 -> 10..30.
    "Affine": ({"__class_fullname__": "Affine", "scale": 2.0, "p": 1.0}, (60, 80), [0, 10, 40, 20]),
    # 90 degrees counter-clockwise about the centre, image size kept: (x, y) -> (y - 30 + 40, -(x - 40) + 30),
    # so x 10..40, y 20..30 -> x 30..40, y 30..60.
    "Affine-rotate": (
        {"__class_fullname__": "Affine", "rotate": 90, "rotate_method": "ellipse", "p": 1.0},
        (60, 80),
        [30, 30, 10, 30],
    ),
    # One quarter turn counter-clockwise makes the image 60 wide, 80 high: (x, y) -> (y, 80 - x); the test
    # turns the box as many times as the transform drew (_quarter_turns).
    "RandomRotate90": ({"__class_fullname__": "RandomRotate90", "p": 1.0}, (80, 60), [20, 40, 10, 30]),
}


def _quarter_turns(turns: int) -> tuple[tuple[int, int], list[float]]:
    """(image height and width, the box) after `turns` quarter turns counter-clockwise of BOX on IMAGE: each
    turn maps (x, y) -> (y, W - x) and swaps the image's width and height."""
    (height, width), (x0, y0, x1, y1) = IMAGE.shape[:2], (10.0, 20.0, 40.0, 30.0)
    for _ in range(turns):
        x0, y0, x1, y1 = y0, width - x1, y1, width - x0
        height, width = width, height
    return (height, width), [x0, y0, x1 - x0, y1 - y0]


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_transform_moves_the_box_as_computed_by_hand(name: str) -> None:
    entry, shape, expected = CASES[name]
    got_shape, boxes, labels, params = _one(entry)
    if name == "RandomRotate90":
        shape, expected = _quarter_turns(params["factor"])  # the number of turns is the seed's draw
    assert got_shape == shape and labels == ["cat"]
    np.testing.assert_allclose(boxes, [expected], atol=ATOL_PX)


def test_quarter_turns_by_hand_agree_with_the_case_above() -> None:
    assert _quarter_turns(1) == ((80, 60), [20.0, 40.0, 10.0, 30.0])
    assert _quarter_turns(2) == ((60, 80), [40.0, 30.0, 30.0, 10.0])  # a half turn: x -> 80 - x, y -> 60 - y
    assert _quarter_turns(4) == ((60, 80), BOX)


def test_pascal_voc_boxes_move_the_same_way() -> None:
    _, boxes, _, _ = _one({"__class_fullname__": "HorizontalFlip", "p": 1.0}, "pascal_voc", [10, 20, 40, 30])
    np.testing.assert_allclose(boxes, [[40, 20, 70, 30]], atol=ATOL_PX)


def test_the_bbox_safe_crop_keeps_the_box_whole_and_moves_it_by_its_crop() -> None:
    shape, boxes, _, params = _one({"__class_fullname__": "RandomSizedBBoxSafeCrop", "height": 50, "width": 50})
    x0, y0, x1, y1 = params["crop_coords"]  # the random crop it drew; the rest is geometry
    assert x0 <= 10 and y0 <= 20 and x1 >= 40 and y1 >= 30 and shape == (50, 50)
    sx, sy = 50 / (x1 - x0), 50 / (y1 - y0)
    np.testing.assert_allclose(boxes, [[(10 - x0) * sx, (20 - y0) * sy, 30 * sx, 10 * sy]], atol=ATOL_PX)


def test_every_geometric_transform_of_the_recipes_has_a_hand_computed_case() -> None:
    used = {entry["__class_fullname__"] for entries in BOX_RECIPES.values() for entry in entries}
    checked = {entry["__class_fullname__"] for entry, _, _ in CASES.values()} | {"RandomSizedBBoxSafeCrop"}
    assert used - {"Normalize"} <= checked


def test_a_box_mostly_cropped_away_is_dropped_with_its_label() -> None:
    crop = {"__class_fullname__": "Crop", "x_min": 0, "y_min": 0, "x_max": 35, "y_max": 60}
    transform = build_box_transforms([crop], 64, box_format="coco", min_visibility=0.3)
    # x 10..40 keeps 25 of 30 px (83%): kept, clipped. x 30..50 keeps 5 of 20 px (25%): dropped.
    _, boxes, labels = augment_boxes(transform, IMAGE, np.array([BOX, [30, 0, 20, 10]]), ["cat", "dog"])
    assert labels == ["cat"]
    np.testing.assert_allclose(boxes, [[10, 20, 25, 10]], atol=ATOL_PX)


@pytest.mark.parametrize("name", sorted(BOX_RECIPES))
def test_recipes_keep_boxes_inside_the_output_and_labels_beside_them(name: str) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, size=(60, 80, 3), dtype=np.uint8)
    transform = get_box_recipe(name, 48, seed=3)
    for _ in range(20):
        out, boxes, labels = augment_boxes(transform, image, np.array([BOX, [50, 5, 20, 40]]), ["cat", "dog"])
        assert out.shape == (48, 48, 3) and out.dtype == np.float32
        assert len(boxes) == len(labels) and set(labels) <= {"cat", "dog"}
        assert np.all(boxes[:, :2] >= -ATOL_PX) and np.all(boxes[:, :2] + boxes[:, 2:] <= 48 + ATOL_PX)
    with pytest.raises(ValueError, match="unknown box augmentation recipe"):
        get_box_recipe("nope", 48)
    with pytest.raises(ValueError, match="box_format"):
        build_box_transforms(BOX_RECIPES[name], 48, box_format="yolo-ish")


def test_every_number_of_quarter_turns_moves_the_box_as_computed_by_hand() -> None:
    seen = set()
    for seed in range(40):
        transform = build_box_transforms([CASES["RandomRotate90"][0]], 64, seed=seed, save_applied_params=True)
        out = transform(image=IMAGE, bboxes=np.array([BOX]), labels=["cat"])
        turns = out["applied_transforms"][0][1]["factor"]
        shape, expected = _quarter_turns(turns)
        assert out["image"].shape[:2] == shape
        np.testing.assert_allclose(out["bboxes"], [expected], atol=ATOL_PX)
        seen.add(turns)
    assert seen == {0, 1, 2, 3}

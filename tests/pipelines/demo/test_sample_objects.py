"""The demo's object images and box-drawing annotators: seeded bytes, tight true boxes around the drawn shapes,
and annotator noise that does what it says (no noise redraws the truth, misses drop boxes, extras add them)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from corpus.boxes import box_set_from_rows, compute_iou
from labeling.sync import extract_boxes
from pipelines.demo.box_annotators import BoxNoise, box_noise_for, box_result, draw_noisy_boxes
from pipelines.demo.sample_objects import (
    OBJECT_CLASSES,
    OBJECT_SIZE,
    boxes_by_record,
    generate_object_images,
    generate_object_site,
)

SIZE = (OBJECT_SIZE, OBJECT_SIZE)


def test_the_same_seed_draws_the_same_distinct_images_with_several_objects_of_several_classes() -> None:
    first, again = generate_object_images(12, seed=2), generate_object_images(12, seed=2)
    assert [im.png for im in first] == [im.png for im in again]
    assert len({im.record_id for im in first}) == 12
    labels = [b["label"] for im in first for b in im.boxes]
    assert set(labels) == set(OBJECT_CLASSES) and len(labels) > 12


def test_each_true_box_is_the_tight_box_of_saturated_shape_pixels() -> None:
    for image in generate_object_images(6, seed=3):
        pixels = np.asarray(Image.open(io.BytesIO(image.png)))
        saturated = (pixels == 255).sum(axis=-1) == 1
        saturated &= (pixels == 0).sum(axis=-1) == 2
        for box in image.boxes:
            x0, y0 = int(box["x"]), int(box["y"])
            x1, y1 = x0 + int(box["w"]), y0 + int(box["h"])
            inside = saturated[y0:y1, x0:x1]
            # the shape touches all four sides of its box
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()


def test_an_annotator_without_noise_redraws_the_truth_through_a_label_studio_result() -> None:
    (image,) = generate_object_images(1, seed=4)
    rng = np.random.default_rng(0)
    drawn = draw_noisy_boxes(image.boxes, BoxNoise(0, 0, 0, 0), OBJECT_CLASSES, SIZE, rng)
    back = extract_boxes(box_result(drawn, SIZE), detect=True)
    iou = compute_iou(box_set_from_rows(image.boxes).xyxy, box_set_from_rows(back).xyxy)
    assert np.allclose(np.diag(iou), 1.0) and [b["label"] for b in back] == [b["label"] for b in image.boxes]


def test_noise_misses_adds_and_relabels_boxes_at_its_rates() -> None:
    images = generate_object_images(40, seed=5)
    rng = np.random.default_rng(1)
    true_count = sum(len(im.boxes) for im in images)
    missed = [draw_noisy_boxes(im.boxes, BoxNoise(0, 1.0, 0, 0), OBJECT_CLASSES, SIZE, rng) for im in images]
    assert all(boxes == [] for boxes in missed)
    extra = [draw_noisy_boxes(im.boxes, BoxNoise(0, 0, 2.0, 0), OBJECT_CLASSES, SIZE, rng) for im in images]
    assert sum(len(b) for b in extra) - true_count == pytest.approx(2.0 * len(images), rel=0.35)
    relabeled = [draw_noisy_boxes(im.boxes, BoxNoise(0, 0, 0, 1.0), OBJECT_CLASSES, SIZE, rng) for im in images]
    for image, boxes in zip(images, relabeled, strict=True):
        assert all(a["label"] != b["label"] for a, b in zip(image.boxes, boxes, strict=True))


def test_the_crowds_error_rate_sets_its_box_noise() -> None:
    assert box_noise_for(0.0) == BoxNoise(0.02, 0.0, 0.0, 0.0)
    sloppy = box_noise_for(0.2)
    assert sloppy.miss == pytest.approx(0.1) and sloppy.wrong == pytest.approx(0.1) and sloppy.jitter > 0.02
    with pytest.raises(ValueError, match="error_rate"):
        box_noise_for(1.5)


def test_the_object_site_and_its_truth_are_written(tmp_path) -> None:
    truth = generate_object_site(tmp_path, n=5, seed=6)
    assert json.loads((tmp_path / "truth.json").read_text()) == json.loads(json.dumps(truth))
    assert len(list((tmp_path / "site" / "objects").glob("*.png"))) == 5
    assert (tmp_path / "site" / "objects.html").read_text().count("<img") == 5
    assert set(boxes_by_record(truth)) == {entry["record_id"] for entry in truth["objects"].values()}

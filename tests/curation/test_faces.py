"""Face boxes are verified (an eye, skin colour, or no colour to judge): texture false positives go, faces stay."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data as skdata

from curation.scrub import ScrubConfig, detect_faces, looks_like_face
from pipelines.demo.sample_images import CLASSES, draw_class, make_rng


def demo_texture(k: int) -> np.ndarray:
    """Texture k of bench/faces.py (the demo's draw_class, seed 7)."""
    rng = make_rng(7, k)
    return np.asarray(draw_class(CLASSES[k % len(CLASSES)], int(rng.integers(128, 193)), rng))


@pytest.mark.parametrize("k", [20, 104, 120])
def test_texture_boxes_without_eyes_or_skin_are_dropped(k):
    texture = demo_texture(k)
    assert len(detect_faces(texture, ScrubConfig(face_verify=False))) == 1  # the bare cascade over-fires
    assert len(detect_faces(texture, ScrubConfig())) == 0


def test_real_faces_pass_the_check_in_colour_and_in_grey():
    astronaut = skdata.astronaut()
    boxes = detect_faces(astronaut, ScrubConfig())
    assert len(boxes) == 1 and looks_like_face(astronaut, boxes[0], ScrubConfig())
    grey = np.dstack([skdata.astronaut().mean(axis=-1).astype(np.uint8)] * 3)
    # In grey, skin cannot be told: a box is kept even with the skin threshold impossible to meet.
    cfg = ScrubConfig(face_skin_fraction=1.0)
    assert len(detect_faces(grey, cfg)) == len(detect_faces(grey, ScrubConfig(face_verify=False))) >= 1

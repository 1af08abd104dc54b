"""The multi-label sample site and crowd: pictures showing label sets, their truth, and per-label noisy answers."""

from __future__ import annotations

import io
from collections import Counter

import numpy as np
from PIL import Image

from pipelines.demo.crowd import answer_label_set
from pipelines.demo.sample_images import CLASSES, draw_picture, make_rng
from pipelines.demo.sample_site import generate_site


def test_the_site_records_a_label_set_per_picture(tmp_path) -> None:
    truth = generate_site(tmp_path, seed=5, images_per_class=4, multilabel=True)
    assert truth["task"] == "multilabel"
    gallery = {p: info for p, info in truth["images"].items() if p.startswith("/images/img_")}
    assert len(gallery) == 4 * len(CLASSES)
    sizes = Counter(len(info["labels"]) for info in gallery.values())
    assert set(sizes) <= {1, 2, 3} and sizes[2] + sizes[3] > 0  # several classes at once
    for info in gallery.values():
        assert set(info["labels"]) <= set(CLASSES) and info["label"] == ";".join(info["labels"])
        assert info["labels"] == sorted(info["labels"])
    # copies carry their original's set; defects without a picture carry none
    for info in truth["images"].values():
        if info["original"]:
            assert info["labels"] == truth["images"][info["original"]]["labels"]
        if "tiny" in info["defects"] or "corrupt" in info["defects"]:
            assert info["labels"] is None
    Image.open(io.BytesIO((tmp_path / "site" / "images" / "img_0001.jpg").read_bytes())).verify()


def test_a_set_picture_shows_each_class_in_a_quadrant() -> None:
    img = np.asarray(draw_picture("checks;sky", 128, make_rng(1)))
    assert img.shape == (128, 128, 3)
    single = np.asarray(draw_picture("dots", 128, make_rng(1)))
    assert single.shape == (128, 128, 3)


def test_simulated_answers_flip_one_label_at_the_error_rate() -> None:
    rng = np.random.default_rng(0)
    labels = list(CLASSES)
    answers = [answer_label_set(["dots", "sky"], labels, 0.2, rng) for _ in range(2000)]
    wrong = sum(set(a) != {"dots", "sky"} for a in answers)
    assert 0.15 < wrong / 2000 < 0.25
    # each wrong answer differs from the truth in exactly one label, and every label takes its share
    flipped = Counter(next(iter(set(a) ^ {"dots", "sky"})) for a in answers if set(a) != {"dots", "sky"})
    assert all(len(set(a) ^ {"dots", "sky"}) <= 1 for a in answers)
    assert set(flipped) == set(labels)
    assert answer_label_set(["sky"], labels, 0.0, rng) == ["sky"]

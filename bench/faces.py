"""Face detection on the demo's textures, its planted faces and skimage's LFW subset: boxes per image set.

Run: `.venv/bin/python bench/faces.py` (no peers; ~1 min on 2 cores). Prints one line per detector setting:
texture images with a box (false positives: the textures hold no face), planted faces found (a box whose
centre falls in the pasted face), extra boxes on those pictures, and LFW faces found / non-faces boxed
(skimage's 100 + 100 25x25 grey crops, upscaled 4x and padded so the cascade sees a whole face).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import cv2
import numpy as np
from skimage import data as skdata

from curation.scrub import ScrubConfig, detect_faces
from pipelines.demo.sample_images import _FACE_SIZE, CLASSES, _load_face_patch, draw_class, make_rng


def textures(n: int = 200) -> Iterator[np.ndarray]:
    for k in range(n):
        rng = make_rng(7, k)
        yield np.asarray(draw_class(CLASSES[k % len(CLASSES)], int(rng.integers(128, 193)), rng))


def planted(n: int = 100) -> Iterator[tuple[tuple[int, int, int, int], np.ndarray]]:
    """Gallery pictures with the astronaut's face pasted as the demo does (draw_gallery_picture)."""
    for k in range(n):
        rng = make_rng(8, k)
        size = int(rng.integers(128, 193))
        img = draw_class(CLASSES[k % len(CLASSES)], size, rng).resize((max(size, 170), max(size, 170)))
        ox, oy = (int(v) for v in rng.integers(0, img.width - _FACE_SIZE + 1, size=2))
        img.paste(_load_face_patch(), (ox, oy))
        yield (ox, oy, _FACE_SIZE, _FACE_SIZE), np.asarray(img)


def lfw(scale: int = 4, pad: int = 40) -> Iterator[tuple[bool, np.ndarray]]:
    for k, crop in enumerate(skdata.lfw_subset()):  # 100 faces, then 100 non-faces
        grey = cv2.resize((crop * 255).astype(np.uint8), (25 * scale, 25 * scale), interpolation=cv2.INTER_CUBIC)
        grey = cv2.copyMakeBorder(grey, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        yield k < 100, np.dstack([grey] * 3)


def covers(box: np.ndarray, face: tuple[int, int, int, int]) -> bool:
    x, y, w, h = box
    fx, fy, fw, fh = face
    return fx <= x + w / 2 <= fx + fw and fy <= y + h / 2 <= fy + fh


def measure(label: str, detect: Callable[[np.ndarray], np.ndarray]) -> None:
    start = time.perf_counter()
    texture_boxes = [len(detect(a)) for a in textures()]
    found = extra = 0
    for face, a in planted():
        boxes = detect(a)
        hits = sum(covers(b, face) for b in boxes)
        found, extra = found + bool(hits), extra + len(boxes) - hits
    lfw_found = lfw_false = 0
    for is_face, a in lfw():
        boxed = len(detect(a)) > 0
        lfw_found, lfw_false = lfw_found + (boxed and is_face), lfw_false + (boxed and not is_face)
    print(
        f"bench faces {label}: textures_with_box={sum(map(bool, texture_boxes))}/200 "
        f"texture_boxes={sum(texture_boxes)} "
        f"planted_found={found}/100 planted_extra_boxes={extra} lfw_found={lfw_found}/100 "
        f"lfw_nonfaces_boxed={lfw_false}/100 astronaut_boxes={len(detect(skdata.astronaut()))} "
        f"seconds={time.perf_counter() - start:.1f}"
    )


def main() -> None:
    for verify in (False, True):
        for neighbours in (3, 5):
            cfg = ScrubConfig(face_verify=verify, face_min_neighbors=neighbours)
            measure(f"minNeighbors={neighbours} verify={verify}", lambda a, cfg=cfg: detect_faces(a, cfg))


if __name__ == "__main__":
    main()

"""Scrub's OCR cost per image: both reads (raw and binarized) batched in one tesseract vs two processes an image.

Run: `.venv/bin/python bench/ocr_batch.py [pairs]` (~1 min on 2 cores). The images: 30 demo gallery textures
(pipelines.demo.sample_images) and 4 drawn signs with PII (an email and phone line, a card in OpenCV's Hershey
font that only the binarized read gets, a misread-looking phone, a harmless line). The peer is the unbatched
path (`ocr_pii_boxes`, what `scrub_image` and main's scrub before the batches ran: two tesseract processes per
image); Flywheel is `ocr_pii_boxes_in_batch` over batches of SCRUB_BATCH_IMAGES, as `scrub` runs it. Pairs
alternate which goes first; both must give the same boxes. Prints ms per image for each and the ratio, and
beside them the batched raw read alone (`ocr_binarized_read=False`: what the second read adds).
"""

from __future__ import annotations

import sys
import time

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from curation.scrub import SCRUB_BATCH_IMAGES, ScrubConfig, ocr_pii_boxes, ocr_pii_boxes_in_batch
from pipelines.demo.sample_images import CLASSES, draw_class, make_rng

DEJAVU = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def sign(lines: list[str], size: tuple[int, int] = (820, 300)) -> np.ndarray:
    noise = np.random.default_rng(0).normal(0, 4, (size[1], size[0], 3))
    img = Image.fromarray(np.clip(np.full((size[1], size[0], 3), (232, 226, 214)) + noise, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for k, line in enumerate(lines):
        draw.text((40, 40 + 80 * k), line, font=ImageFont.truetype(DEJAVU, 28), fill=(25, 25, 30))
    return np.asarray(img)


def hershey_card() -> np.ndarray:
    pixels = np.array(Image.new("RGB", (700, 120), (170, 205, 235)))
    cv2.putText(pixels, "6011 1111 1111 1117", (28, 70), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (10, 20, 60), 2, cv2.LINE_AA)
    return np.clip(pixels + np.random.default_rng(0).normal(0, 4, pixels.shape), 0, 255).astype(np.uint8)


def images() -> list[np.ndarray]:
    out = []
    for k in range(30):
        rng = make_rng(7, k)
        out.append(np.asarray(draw_class(CLASSES[k % len(CLASSES)], int(rng.integers(128, 193)), rng)))
    out.append(sign(["Contact: jane.doe@example.com", "Call +1 415 555 0134 today", "Fresh bread"]))
    out.append(hershey_card())
    out.append(sign(["Tel. 06 l2 34 56 78"], (500, 120)))
    out.append(sign(["Open Monday to Saturday"], (600, 120)))
    return out


def unbatched(rgbs: list[np.ndarray], cfg: ScrubConfig) -> list[list]:
    return [ocr_pii_boxes(rgb, cfg).tolist() for rgb in rgbs]


def batched(rgbs: list[np.ndarray], cfg: ScrubConfig) -> list[list]:
    out = []
    for start in range(0, len(rgbs), SCRUB_BATCH_IMAGES):
        part = rgbs[start : start + SCRUB_BATCH_IMAGES]
        out += [b.tolist() for b in ocr_pii_boxes_in_batch(part, cfg, [None] * len(part))]
    return out


def main(pairs: int = 3) -> None:
    rgbs, cfg = images(), ScrubConfig()
    raw_only = cfg.model_copy(update={"ocr_binarized_read": False})
    seconds: dict[str, list[float]] = {"batched": [], "unbatched": [], "batched_raw_only": []}
    results = {}
    for pair in range(pairs):
        order = [("unbatched", unbatched, cfg), ("batched", batched, cfg), ("batched_raw_only", batched, raw_only)]
        for name, run, config in order if pair % 2 == 0 else order[::-1]:
            started = time.perf_counter()
            results[name] = run(rgbs, config)
            seconds[name].append(time.perf_counter() - started)
    assert results["batched"] == results["unbatched"], "batched boxes differ from unbatched"
    boxes = sum(len(b) for b in results["batched"])
    per_image = {name: 1000 * min(s) / len(rgbs) for name, s in seconds.items()}
    for name, s in seconds.items():
        print(f"{name}: {', '.join(f'{1000 * v / len(rgbs):.0f}' for v in s)} ms/image (best {per_image[name]:.0f})")
    ratio = per_image["unbatched"] / per_image["batched"]
    print(
        f"ocr_batch images={len(rgbs)} boxes={boxes} flywheel_ms_per_image={per_image['batched']:.0f} "
        f"peer_ms_per_image={per_image['unbatched']:.0f} ratio={ratio:.2f} (peer time / Flywheel time)"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)

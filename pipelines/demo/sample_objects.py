"""The demo's object images: shapes drawn at known boxes on varied backgrounds, a gallery site and its box truth."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from corpus.boxes import build_boxes, xyxy_to_xywh
from corpus.schema import make_record_id

OBJECT_CLASSES = ("circle", "square", "triangle")
# 96 px a side: large enough that a 10 px shape is drawable in Label Studio, small enough for a quick test.
OBJECT_SIZE = 96
# A shape with less than this share of its pixels still visible (another shape covers it) is not an object of
# the truth: nobody could tell what it is.
MIN_VISIBLE_SHARE = 0.6
# Images per gallery page. A release keeps the images of one page in one split (ReleaseConfig.group_by_page), so
# a single page would put every image in train; pages of 5 give a small demo's release val and test images.
PER_PAGE = 5


@dataclass(frozen=True)
class ObjectImage:
    """One generated image: its PNG bytes, record id (corpus.schema.make_record_id) and true boxes (BOX_TYPE)."""

    name: str
    png: bytes
    record_id: str
    boxes: list[dict[str, Any]]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    kind = int(rng.integers(3))
    if kind == 0:  # noise, muted so that shapes stand out as they would to a person
        return rng.normal(rng.uniform(60, 190, size=3), 20, size=(size, size, 3))
    if kind == 1:  # a gradient
        return np.stack([xx, yy, 1 - xx], axis=-1) * rng.uniform(60, 200, size=3)
    stripes = (np.sin((xx * rng.uniform(3, 9) + yy * rng.uniform(-4, 4)) * np.pi) > 0)[..., None]
    return np.where(stripes, rng.uniform(40, 200, size=3), rng.uniform(40, 200, size=3))


def _shape_mask(kind: str, cx: float, cy: float, r: float, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    if kind == "circle":
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
    if kind == "square":
        return (np.abs(xx - cx) <= r) & (np.abs(yy - cy) <= r)
    return (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= (yy - (cy - r)) / 2)  # apex up


def draw_object_image(rng: np.random.Generator, size: int = OBJECT_SIZE) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """An RGB image (size, size, 3) with 1-4 shapes of OBJECT_CLASSES in saturated colours, and its true boxes
    (rows of BOX_TYPE): the tight box of each shape's visible pixels; a shape mostly covered by a later one
    (under MIN_VISIBLE_SHARE visible) is not an object."""
    image = _background(rng, size)
    owner = np.full((size, size), -1)
    kinds, areas = [], []
    for i in range(int(rng.integers(1, 5))):
        kind = OBJECT_CLASSES[int(rng.integers(len(OBJECT_CLASSES)))]
        r = float(rng.uniform(7, 16))
        mask = _shape_mask(kind, float(rng.uniform(r, size - r)), float(rng.uniform(r, size - r)), r, size)
        colour = np.zeros(3)
        colour[int(rng.integers(3))] = 255.0  # one saturated channel: a shape never melts into its background
        image[mask] = colour
        owner[mask] = i
        kinds.append(kind)
        areas.append(int(mask.sum()))
    corners, labels = [], []
    for i, kind in enumerate(kinds):
        ys, xs = np.nonzero(owner == i)
        if areas[i] and len(xs) >= MIN_VISIBLE_SHARE * areas[i]:
            corners.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            labels.append(kind)
    xywh = xyxy_to_xywh(np.array(corners, dtype=np.float64).reshape(-1, 4))
    return np.clip(image, 0, 255).astype(np.uint8), build_boxes(xywh, labels, size, size)


def generate_object_images(n: int, seed: int = 7, size: int = OBJECT_SIZE) -> list[ObjectImage]:
    """`n` distinct object images from `seed` (the same seed gives the same bytes), named object-NNN.png."""
    rng = np.random.default_rng(seed)
    out: list[ObjectImage] = []
    seen: set[str] = set()
    while len(out) < n:
        pixels, boxes = draw_object_image(rng, size)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="PNG")
        record_id = make_record_id(buf.getvalue())
        if record_id in seen:
            continue
        seen.add(record_id)
        out.append(ObjectImage(f"object-{len(out):03d}.png", buf.getvalue(), record_id, boxes))
    return out


def object_truth(images: list[ObjectImage]) -> dict[str, Any]:
    """The truth of an object site: {"objects": {"/objects/<name>": {"record_id", "boxes"}}, "classes"}."""
    return {
        "classes": list(OBJECT_CLASSES),
        "objects": {f"/objects/{im.name}": {"record_id": im.record_id, "boxes": im.boxes} for im in images},
    }


def boxes_by_record(truth: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """record_id -> true boxes, from an object site's truth (object_truth)."""
    return {entry["record_id"]: entry["boxes"] for entry in truth["objects"].values()}


def _page_name(page: int) -> str:
    return "objects.html" if page == 0 else f"objects-{page + 1}.html"


def generate_object_site(out_dir: Path, n: int = 40, seed: int = 7) -> dict[str, Any]:
    """Write an object gallery under `out_dir/site/` (index.html linking gallery pages objects.html,
    objects-2.html, ... of PER_PAGE images each, the images under /objects/) and its truth to
    `out_dir/truth.json`; returns the truth. Read by simulated annotators and evaluations only."""
    images = generate_object_images(n, seed)
    site = out_dir / "site"
    (site / "objects").mkdir(parents=True, exist_ok=True)
    for image in images:
        (site / "objects" / image.name).write_bytes(image.png)
    pages = [images[i : i + PER_PAGE] for i in range(0, len(images), PER_PAGE)]
    for page, shown in enumerate(pages):
        figures = "\n".join(
            f'<figure><img src="/objects/{im.name}" alt="shapes {im.name}"><figcaption>{im.name}</figcaption></figure>'
            for im in shown
        )
        html = f"<html><head><title>Shapes {page + 1}</title></head><body><h1>Shapes</h1>\n{figures}\n</body></html>\n"
        (site / _page_name(page)).write_text(html)
    links = "".join(f'<a href="/{_page_name(page)}">Shapes {page + 1}</a>\n' for page in range(len(pages)))
    (site / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")
    truth = object_truth(images)
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=2, sort_keys=True) + "\n")
    return truth

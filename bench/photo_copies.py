"""Photo tiles with planted copies (rotation, letterbox, crop, overlay) for the copy-detection bench and tests.

Nothing is downloaded: the photos bundled with scikit-image (`skimage.data`: astronaut, coffee, rocket, chelsea,
...) and scikit-learn (`load_sample_images`: china, flower), each resized to a 512 px shorter side and cut into
non-overlapping 128 px tiles 8 px apart (flat tiles skipped). Every tile gets one copy made by one of: a small
rotation (3-10 degrees, the corners cropped away), letterboxing (black bars to 16:9 or 9:16), a crop (50-80% of
the area, resized back), an overlay (a dark caption bar with text over 15-25% of it); originals are JPEG q90,
copies re-encoded at q75. The hard negatives are the tiles themselves: neighbouring tiles of one photo share its
colours and textures, and the texture photos (brick, grass, gravel, a page of text) repeat one pattern all over.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

TILE = 128
SIDE = 512
PHOTOS = ("astronaut", "coffee", "rocket", "chelsea", "hubble_deep_field", "immunohistochemistry", "retina")
GREY_PHOTOS = ("camera", "coins", "clock", "moon", "brick", "grass", "gravel", "page")
SKLEARN_PHOTOS = ("china", "flower")
ALL_PHOTOS = PHOTOS + GREY_PHOTOS + SKLEARN_PHOTOS
TEXTURES = ("brick", "grass", "gravel", "page")
TRANSFORMS = ("rotate", "letterbox", "crop", "overlay")


def load_photo(name: str) -> Image.Image:
    """One bundled photo by name (skimage.data or sklearn's sample images), RGB, shorter side SIDE px."""
    if name in SKLEARN_PHOTOS:
        from sklearn.datasets import load_sample_images

        array = load_sample_images().images[SKLEARN_PHOTOS.index(name)]
    else:
        import skimage.data

        array = getattr(skimage.data, name)()
    image = Image.fromarray(array).convert("RGB")
    scale = SIDE / min(image.size)
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)


def cut_tiles(photo: Image.Image, limit: int | None = None) -> list[Image.Image]:
    """Non-overlapping TILE px tiles of `photo`, 8 px apart, row by row, skipping flat ones (sky, borders)."""
    step = TILE + 8
    tiles = []
    for top in range(0, photo.height - TILE + 1, step):
        for left in range(0, photo.width - TILE + 1, step):
            tile = photo.crop((left, top, left + TILE, top + TILE))
            if np.asarray(tile.convert("L"), dtype=np.float32).std() > 12:
                tiles.append(tile)
    return tiles[:limit]


def make_copy(tile: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    """A copy of `tile` by one of TRANSFORMS, its parameters drawn from `rng`."""
    if kind == "rotate":
        angle = float(rng.uniform(3, 10) * rng.choice([-1, 1]))
        turned = tile.rotate(angle, resample=Image.Resampling.BILINEAR)
        m = int(TILE * 0.1)
        return turned.crop((m, m, TILE - m, TILE - m)).resize((TILE, TILE), Image.Resampling.BILINEAR)
    if kind == "letterbox":
        wide = rng.random() < 0.5
        canvas = Image.new("RGB", (TILE * 16 // 9, TILE) if wide else (TILE, TILE * 16 // 9), (0, 0, 0))
        canvas.paste(tile, ((canvas.width - TILE) // 2, (canvas.height - TILE) // 2))
        return canvas
    if kind == "crop":
        side = int(TILE * np.sqrt(rng.uniform(0.5, 0.8)))
        left, top = (int(v) for v in rng.integers(0, TILE - side + 1, size=2))
        return tile.crop((left, top, left + side, top + side)).resize((TILE, TILE), Image.Resampling.BILINEAR)
    if kind != "overlay":
        raise ValueError(f"unknown transform {kind!r}; expected one of {TRANSFORMS}")
    over = tile.copy()
    draw = ImageDraw.Draw(over, "RGBA")
    bar = int(TILE * rng.uniform(0.15, 0.25))
    y = 0 if rng.random() < 0.5 else TILE - bar
    draw.rectangle((0, y, TILE, y + bar), fill=(20, 20, 20, 180))
    draw.text((4, y + 2), "(c) flywheel " + str(int(rng.integers(1000, 9999))), fill=(255, 255, 255, 255))
    return over


def jpeg(image: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def make_photo_set(
    seed: int = 0, photos: Sequence[str] = ALL_PHOTOS, tiles_per_photo: int | None = None
) -> tuple[list[bytes], np.ndarray, np.ndarray, list[str]]:
    """(JPEG bytes: every original tile, then every copy; photo index of each image; the planted pairs (P, 2)
    (original, copy); the transform of each pair). Transforms cycle through TRANSFORMS tile by tile."""
    rng = np.random.default_rng(seed)
    originals, copies, photo_of, kinds = [], [], [], []
    for p, name in enumerate(photos):
        for tile in cut_tiles(load_photo(name), tiles_per_photo):
            kind = TRANSFORMS[len(kinds) % len(TRANSFORMS)]
            originals.append(jpeg(tile, 90))
            copies.append(jpeg(make_copy(tile, kind, rng), 75))
            photo_of.append(p)
            kinds.append(kind)
    n = len(originals)
    pairs = np.stack([np.arange(n), np.arange(n) + n], axis=1)
    return originals + copies, np.asarray(photo_of * 2), pairs, kinds

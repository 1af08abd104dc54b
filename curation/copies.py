"""Copy detection: an image's colour and local-feature descriptors, and the check that two images are copies.

A perceptual hash compares the layout of whole images, so a small rotation, letterboxing, a crop or an
overlay moves it by many bits. Copy-detection systems find such copies in two steps (e.g. Douze et al.,
"The 2021 Image Similarity Dataset and Challenge", arXiv:2106.09672; its baselines verify candidates with
local features): cheap candidates, then a geometric check of each candidate pair. Here:

- candidates: each image's nearest neighbours by a colour histogram of its trimmed content (colours barely
  move under rotation, letterboxing, crops and overlays), `curation.semantic.find_nearest_pairs`;
- geometric check: ORB keypoints (Rublee et al., ICCV 2011; OpenCV, Apache-2.0) matched with Lowe's ratio
  test, then a similarity transform (rotation, scale, shift) fitted by RANSAC; a copy has many inliers and
  maps one image almost wholly inside the other;
- photometric check: under that transform the textured 8x8 cells of the covered image must correlate with
  the other's. Repetitive textures (a page of text, a brick wall, grass) give plausible keypoint matches
  between different patches, which this check refuses.

Thresholds were measured in `bench/semantic_dedup.py` (photo tiles with planted transforms and hard negatives).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from curation.images import orient, orientation_of, reduce_in_strips
from curation.semantic import find_nearest_pairs

# Candidates per image: its nearest neighbours by each of its two colour histograms. On the bench set (seeds 0
# and 1) 6 + 6 put 0.97 of the copies among the candidates (10 by the whole image's alone: 0.95, overlays 0.78-0.85)
# for ~5.4 candidate pairs per image; each costs one check (~3-9 ms).
NEIGHBOURS = 6
# Longer side, in pixels, of the grey image keypoints are found in: small photos are enlarged to it so ORB's
# 31 px patches fit; larger ones reduced (the cost of matching does not grow with the image).
FEATURE_SIDE = 256
# Longer side of the thumbnail the photometric check compares (8x8 cells: up to 256 of them).
THUMBNAIL_SIDE = 128
# Keypoints kept per image (ORB's strongest by Harris score): 500 is OpenCV's default nfeatures.
MAX_KEYPOINTS = 500
# FAST threshold: OpenCV's default 20 finds too few corners in smooth photos (fur, skin, sky); 10 first, and 3
# where that finds fewer than MIN_KEYPOINTS (measured on the bench set: recall 0.87 -> 0.93).
FAST_THRESHOLDS = (10, 3)
MIN_KEYPOINTS = 100
# Lowe's ratio test (Lowe, IJCV 2004, uses 0.8).
RATIO = 0.8
# RANSAC reprojection threshold in pixels of FEATURE_SIDE images (OpenCV's default is 3; 5 keeps the matches
# of a JPEG-re-encoded, rotated copy, measured on the bench set).
RANSAC_PIXELS = 5.0
# A copy pair needs this many RANSAC inliers: on the bench set true pairs have a median of ~160, the 10th
# percentile ~45; distinct patches of repetitive textures reach 10-80.
MIN_INLIERS = 25
# Under the fitted transform at least this share of one image must lie inside the other (a crop, a rotated
# copy with its corners cut, a letterboxed copy with its bars trimmed and an overlay all do).
MIN_COVER = 0.8
# Share of the covered image's textured cells whose correlation with the other image exceeds CELL_CORRELATION.
MIN_AGREEMENT = 0.5
CELL_CORRELATION = 0.5
# A cell is textured when its grey values vary by at least this many standard deviations of the whole overlap.
_CELL_TEXTURE = 0.15
_CELL = 8
# Colour histogram bins (hue, saturation, value); 128 values, square-rooted (Hellinger) so cosine compares them.
COLOUR_BINS = (8, 4, 4)
COLOUR_DIM = 2 * int(np.prod(COLOUR_BINS))  # the whole image's histogram, then its middle rows'
# Bars around the content (letterboxing) are the rows and columns within this of the corners' median colour.
_BAR_TOLERANCE = 16


@dataclass(frozen=True)
class CopyFeatures:
    """What the copy check compares: ORB `points` (K, 2) float32 in a FEATURE_SIDE image, their `descriptors`
    (K, 32) uint8, and a grey `thumbnail` (H, W) uint8 of THUMBNAIL_SIDE; `scale` is thumbnail px per point px."""

    points: np.ndarray
    descriptors: np.ndarray
    thumbnail: np.ndarray

    @property
    def scale(self) -> float:
        return THUMBNAIL_SIDE / FEATURE_SIDE

    def to_bytes(self) -> bytes:
        """A compact blob: K, H, W (int32), then points, descriptors and thumbnail."""
        header = np.array([len(self.points), *self.thumbnail.shape], dtype=np.int32)
        return b"".join(a.tobytes() for a in (header, self.points, self.descriptors, self.thumbnail))

    @classmethod
    def from_bytes(cls, blob: bytes) -> CopyFeatures:
        """The inverse of `to_bytes`."""
        k, h, w = np.frombuffer(blob, dtype=np.int32, count=3).tolist()
        at = 12
        points = np.frombuffer(blob, dtype=np.float32, count=2 * k, offset=at).reshape(k, 2)
        at += 8 * k
        descriptors = np.frombuffer(blob, dtype=np.uint8, count=32 * k, offset=at).reshape(k, 32)
        thumbnail = np.frombuffer(blob, dtype=np.uint8, count=h * w, offset=at + 32 * k).reshape(h, w)
        return cls(points, descriptors, thumbnail)


def trim_bars(rgb: np.ndarray) -> np.ndarray:
    """`rgb` (H, W, 3) uint8 without uniform bars at its edges (letterboxing, pillarboxing, a flat frame): the
    edge rows and columns whose pixels all stay near the corners' median colour. An image that is all bar, or
    would keep under a quarter of its area, is returned whole."""
    corners = np.stack([rgb[0, 0], rgb[0, -1], rgb[-1, 0], rgb[-1, -1]]).astype(np.int16)
    content = (np.abs(rgb.astype(np.int16) - np.median(corners, axis=0)) > _BAR_TOLERANCE).any(axis=2)
    rows, cols = np.flatnonzero(content.any(axis=1)), np.flatnonzero(content.any(axis=0))
    if rows.size == 0:
        return rgb
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    if (bottom - top) * (right - left) < rgb.shape[0] * rgb.shape[1] / 4:
        return rgb
    return rgb[top:bottom, left:right]


def decode_for_copies(data: bytes) -> np.ndarray:
    """RGB (H, W, 3) uint8 of encoded image bytes (already checked by curate's decode, so within its limits),
    EXIF-oriented, its shorter side FEATURE_SIDE..2*FEATURE_SIDE-1 when larger: a baseline JPEG is decoded at
    that DCT scale, any other image box-reduced in strips (no full-size RGB copy is made)."""
    with Image.open(io.BytesIO(data)) as image:
        orientation = orientation_of(image)
        image.draft("RGB", (FEATURE_SIDE, FEATURE_SIDE))
        image.load()
        factor = min(image.size) // FEATURE_SIDE
        reduced = reduce_in_strips(image, factor) if factor >= 2 else image
        return np.asarray(orient(reduced.convert("RGB"), orientation))


def _resized(grey: np.ndarray, side: int) -> np.ndarray:
    scale = side / max(grey.shape)
    size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def _colour_histogram(rgb: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, list(COLOUR_BINS), [0, 180, 0, 256, 0, 256]).ravel()
    return np.sqrt(hist / max(float(hist.sum()), 1.0))


def compute_colour(rgb: np.ndarray) -> np.ndarray:
    """(COLOUR_DIM,) float32: two square-rooted HSV histograms of `rgb` (H, W, 3) with its bars trimmed, of the
    whole image and of its middle half of rows (which a caption bar or subtitle strip at the top or bottom
    leaves alone); the candidate keys, each compared by cosine (near 1 = similar colours)."""
    content = trim_bars(rgb)
    middle = content[content.shape[0] // 4 : content.shape[0] - content.shape[0] // 4]
    return np.concatenate([_colour_histogram(content), _colour_histogram(middle)]).astype(np.float32)


def compute_copy_features(rgb: np.ndarray) -> CopyFeatures:
    """ORB keypoints and a thumbnail of `rgb` (H, W, 3) uint8, bars trimmed, contrast equalised (CLAHE) so
    smooth photos still have corners to match."""
    grey = cv2.cvtColor(np.ascontiguousarray(trim_bars(rgb)), cv2.COLOR_RGB2GRAY)
    working = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4)).apply(_resized(grey, FEATURE_SIDE))
    keypoints, descriptors = (), None
    for threshold in FAST_THRESHOLDS:
        orb = cv2.ORB_create(nfeatures=MAX_KEYPOINTS, edgeThreshold=15, fastThreshold=threshold)
        keypoints, descriptors = orb.detectAndCompute(working, None)
        if len(keypoints) >= MIN_KEYPOINTS:
            break
    points = np.array([k.pt for k in keypoints], dtype=np.float32).reshape(-1, 2)
    descriptors = descriptors if descriptors is not None else np.zeros((0, 32), dtype=np.uint8)
    return CopyFeatures(points, descriptors.astype(np.uint8), _resized(grey, THUMBNAIL_SIDE))


def _fit_transform(a: CopyFeatures, b: CopyFeatures) -> tuple[np.ndarray | None, int]:
    """The similarity transform (2, 3) mapping a's points onto b's by ratio-tested matches and RANSAC, and its
    inlier count (None, 0 when there are too few matches)."""
    if len(a.descriptors) < 2 or len(b.descriptors) < 2:
        return None, 0
    matches = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(a.descriptors, b.descriptors, k=2)
    good = [m[0] for m in matches if len(m) == 2 and m[0].distance < RATIO * m[1].distance]
    if len(good) < 3:
        return None, 0
    src = a.points[[m.queryIdx for m in good]]
    dst = b.points[[m.trainIdx for m in good]]
    transform, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PIXELS)
    if transform is None:
        return None, 0
    return transform, int(inliers.sum())


def _cells(image: np.ndarray) -> np.ndarray:
    h, w = (image.shape[0] // _CELL) * _CELL, (image.shape[1] // _CELL) * _CELL
    return image[:h, :w].reshape(h // _CELL, _CELL, w // _CELL, _CELL).transpose(0, 2, 1, 3).reshape(-1, _CELL**2)


def _agreement(outer: np.ndarray, inner: np.ndarray, transform: np.ndarray) -> float:
    """Share of `inner`'s textured cells that correlate with `outer` warped onto it by `transform` (thumbnail
    pixels); 0 when under MIN_COVER of `inner` is covered or it has under 8 textured cells."""
    size = (inner.shape[1], inner.shape[0])
    warped = cv2.warpAffine(outer.astype(np.float32), transform, size, flags=cv2.INTER_LINEAR)
    covered = cv2.warpAffine(np.ones(outer.shape, np.float32), transform, size, flags=cv2.INTER_NEAREST) > 0.5
    if covered.mean() < MIN_COVER:
        return 0.0
    x, y = warped, inner.astype(np.float32)
    x = (x - x[covered].mean()) / (x[covered].std() + 4)
    y = (y - y[covered].mean()) / (y[covered].std() + 4)
    full = _cells(covered.astype(np.float32)).min(axis=1) > 0.5
    cx, cy = _cells(x)[full], _cells(y)[full]
    dx, dy = cx - cx.mean(axis=1, keepdims=True), cy - cy.mean(axis=1, keepdims=True)
    sx, sy = dx.std(axis=1), dy.std(axis=1)
    textured = (sx >= _CELL_TEXTURE) | (sy >= _CELL_TEXTURE)
    if textured.sum() < 8:
        return 0.0
    correlation = (dx * dy).mean(axis=1) / np.maximum(sx * sy, 1e-6)
    agree = (sx >= _CELL_TEXTURE) & (sy >= _CELL_TEXTURE) & (correlation > CELL_CORRELATION)
    return float(agree[textured].mean())


def score_copy(a: CopyFeatures, b: CopyFeatures) -> tuple[int, float]:
    """(RANSAC inliers, photometric agreement in [0, 1]) of two images; high both = copies. The agreement is
    taken with whichever image the transform covers (a crop lies inside its original, not the reverse)."""
    transform, inliers = _fit_transform(a, b)
    if transform is None:
        return 0, 0.0
    to_thumb = transform.copy()
    to_thumb[:, 2] *= b.scale  # points and thumbnails share one scale factor: only the shift changes units
    back = cv2.invertAffineTransform(to_thumb)
    return inliers, max(_agreement(a.thumbnail, b.thumbnail, to_thumb), _agreement(b.thumbnail, a.thumbnail, back))


def are_copies(a: CopyFeatures, b: CopyFeatures) -> bool:
    """True if `a` and `b` pass the geometric (MIN_INLIERS) and photometric (MIN_AGREEMENT) checks."""
    inliers, agreement = score_copy(a, b)
    return inliers >= MIN_INLIERS and agreement >= MIN_AGREEMENT


def find_copy_candidates(colours: np.ndarray) -> np.ndarray:
    """Candidate pairs (P, 2) int64 (i < j) of colour descriptors (N, COLOUR_DIM) (`compute_colour`): each image
    with its NEIGHBOURS most similar by its whole histogram and by its middle rows' histogram."""
    colours = np.asarray(colours, dtype=np.float32)
    if colours.ndim != 2 or colours.shape[1] != COLOUR_DIM:
        raise ValueError(f"colours must be (N, {COLOUR_DIM}); got shape {colours.shape}")
    half = COLOUR_DIM // 2
    pairs = [find_nearest_pairs(view, NEIGHBOURS) for view in (colours[:, :half], colours[:, half:])]
    return np.unique(np.concatenate(pairs), axis=0)


def find_copy_candidate_links(features: pa.Table) -> np.ndarray:
    """Candidate links (L, 2) int64 of global rows (smaller g first) from a table of (g, colour) (`colour` null:
    not an image still kept), by `find_copy_candidates`."""
    rows = features.filter(pc.is_valid(features.column("colour")))
    g = rows.column("g").to_numpy()
    if g.size < 2:
        return np.zeros((0, 2), dtype=np.int64)
    colours = pc.list_flatten(rows.column("colour")).to_numpy(zero_copy_only=False).reshape(g.size, COLOUR_DIM)
    links = g[find_copy_candidates(colours)]
    return np.unique(np.sort(links, axis=1), axis=0)


def confirm_copy_links(links: np.ndarray, features: pa.Table) -> np.ndarray:
    """The candidate links (L, 2) of global rows whose images are copies (`are_copies`); `features` holds (g,
    copy) of both ends, `copy` being `CopyFeatures.to_bytes` (null: not checked, never a copy)."""
    if len(links) == 0:
        return links
    blobs = dict(zip(features.column("g").to_pylist(), features.column("copy").to_pylist(), strict=True))
    parsed: dict[int, CopyFeatures | None] = {}

    def of(g: int) -> CopyFeatures | None:
        if g not in parsed:
            parsed[g] = CopyFeatures.from_bytes(blobs[g]) if blobs.get(g) is not None else None
        return parsed[g]

    keep = [(a := of(i)) is not None and (b := of(j)) is not None and are_copies(a, b) for i, j in links.tolist()]
    return links[np.array(keep, dtype=bool)]


def find_copies(images: Sequence[bytes]) -> np.ndarray:
    """Pairs (P, 2) int64 (i < j) of encoded `images` that are copies of each other: colour candidates, each
    checked by `are_copies`. All in this process (curate's rounds spread the same steps over shards)."""
    rgbs = [decode_for_copies(data) for data in images]
    candidates = find_copy_candidates(np.stack([compute_colour(rgb) for rgb in rgbs]))
    table = pa.table({"g": np.arange(len(images)), "copy": [compute_copy_features(rgb).to_bytes() for rgb in rgbs]})
    return confirm_copy_links(candidates, table)

"""What the curate stage checks and how strictly: its drop reasons and CurateConfig's thresholds, with sources."""

from __future__ import annotations

from pydantic import BaseModel, Field

from curation.images import DECODE_BUDGET_BYTES, PILLOW_MAX_PIXELS
from curation.quality import QUALITY_REASONS, QualityConfig

# Every reason this stage can give, in the order a row is checked.
DROP_REASONS = (
    "unknown_kind",
    "undecodable",
    "truncated",
    "too_large",
    "too_small",
    "extreme_aspect_ratio",
    "low_information",
    "exact_duplicate",
    "near_duplicate",
    "empty_text",
    *QUALITY_REASONS,
    "duplicate_page",
    "near_duplicate_page",
)


class CurateConfig(BaseModel):
    """Thresholds of the curate stage."""

    min_side: int = Field(
        32,
        ge=1,
        description="Drop images whose shorter side is below this many pixels. 32 px is the side of CIFAR "
        "images, the smallest common training resolution; below it a web image is an icon, spacer or tracker.",
    )
    max_pixels: int = Field(
        PILLOW_MAX_PIXELS,
        ge=1,
        description="Decompression-bomb guard: images with more pixels are dropped as too_large before "
        "decoding. Default: Pillow's own Image.MAX_IMAGE_PIXELS (89,478,485).",
    )
    max_decode_bytes: int = Field(
        DECODE_BUDGET_BYTES,
        ge=1,
        description="Memory one image may take decoded (estimated from its header, before decoding), so a "
        "worker curates a hostile crawl in bounded memory: images that would need more are dropped as "
        "too_large. Baseline JPEGs are decoded at a reduced DCT scale (shorter side 256-511 px, all checks "
        "and hashes need), so only those reduced pixels count; other formats decode at full size (Pillow keeps "
        "RGB in 4 bytes per pixel); progressive JPEGs add libjpeg's whole-image coefficient buffer (2 bytes per "
        "sample). Default 160 MiB: 41.9 MP of RGB(A), above an 8K UHD screenshot (33 MP), below a 9400x9400 "
        "RGB PNG (353 MB); README 'Bounded memory per image' gives the measured peaks.",
    )
    phash_max_distance: int = Field(
        10,
        ge=0,
        le=64,
        description="Images whose 64-bit pHashes differ in at most this many bits are near-duplicates. "
        "imagededup's PHash default max_distance_threshold is 10. Measured on 200 generated smooth random "
        "images and 150 resized + JPEG re-encoded copies: copies differ by 0-4 bits, distinct images by "
        ">= 14 (1st percentile 20, median 32).",
    )
    near_dup_max_signature_distance: float = Field(
        0.06,
        ge=0,
        le=1,
        description="A pHash near-duplicate pair must also have 32x32 layout signatures (images.compute_signature) "
        "within this mean absolute difference. Measured on the sample site (seed 7): planted resized / re-encoded "
        "copies 0.000-0.037, distinct textures that pHash put within 10 bits 0.083 or more.",
    )
    semantic_near_duplicates: bool = Field(
        False,
        description="Also find copies pHash misses (small rotations, letterboxing, crops, overlays): colour-"
        "histogram neighbours checked with ORB keypoints, a RANSAC similarity transform and a photometric check "
        "(curation.copies); found pairs join the pHash clusters as near_duplicate. bench/README.md (semantic "
        "near-duplicates): recall on planted copies 0.14 -> ~0.9 at precision 1.00, ~70-90 ms more per image on a "
        "loaded 2-core VM, ~36 KB more per image in the run's scratch space, so off by default. Within the run "
        "only: earlier runs' images are matched by pHash alone (the dedup index holds no keypoints).",
    )
    max_aspect_ratio: float = Field(
        3.0,
        ge=1.0,
        description="Drop images whose longer side exceeds this multiple of the shorter (banners, spacers, "
        "strips). 3 is DataComp's basic-filtering bound (Gadre et al. 2023).",
    )
    min_information: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="Drop near-uniform images: greyscale histogram entropy / 8 bits below this (0 = one flat "
        "colour, 0.125 = a clean two-tone image, photos 0.8-0.95; measured in tests/curation). Below 0.1 "
        "an image holds fewer than ~2 distinct grey levels' worth of information.",
    )
    text_near_duplicates: bool = Field(
        True,
        description="Drop pages that are MinHash near-duplicates (5-gram shingles, 14 bands x 8 rows: "
        "datatrove's FineWeb defaults; pairs above Jaccard ~0.75 are caught) as near_duplicate_page.",
    )
    text_near_dup_verify: bool = Field(
        False,
        description="Higher-recall page near-dedup: candidates from 20 bands x 5 rows of the same MinHash "
        "values (a pair of Jaccard 0.8 is one with p = 0.9996, against 0.92 at 14 x 8), each kept only if its "
        "estimated Jaccard (the share of 112 equal 16-bit MinHash values) is >= 0.7, 0.8 less 2.6 standard "
        "deviations of that estimate. bench/README.md (text near-duplicates): recall on planted pairs of "
        "Jaccard >= 0.8 0.991 -> 0.999 and no false merge, for ~270 more bytes per page. Pages are matched "
        "against earlier runs' dedup index on its 14 x 8 keys either way.",
    )
    quality: QualityConfig = Field(default_factory=QualityConfig, description="Page language and quality rules.")

"""What the scrub stage looks for and how hard it blurs: ScrubConfig, each default with where it comes from."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, model_validator

from curation.images import PILLOW_MAX_PIXELS
from curation.ocr import MISREAD_NUMBER_DIGITS
from curation.pii import ENTITIES, Entity, Policy


class ScrubConfig(BaseModel):
    """What the scrub stage looks for and how hard it blurs."""

    entities: list[Entity] = Field(default_factory=lambda: list(ENTITIES), description="PII types to look for.")
    policies: dict[Entity, Policy] = Field(
        default_factory=dict,
        description='What to do per entity: "redact" (typed placeholder, the default), "mask" (keep separators '
        'and, for numbers, the last 4), "hash" (keyed token: the same value gives the same token, so joins '
        'still work) or "drop" (the whole record is dropped as contains_pii, its text redacted).',
    )
    hash_key: SecretStr = Field(
        SecretStr(""),
        description="Key of the hash policy (HMAC-SHA256); required when a policy is hash. Reports show it masked.",
    )
    phone_region: str = Field("US", description="Default region for phone numbers written without +country code.")
    extra_phone_regions: list[str] = Field(
        default_factory=list,
        description='More regions whose national formats to accept, e.g. ["GB"] finds "(020) 7946 0958".',
    )
    phone_region_hints: bool = Field(
        True,
        description="Also try the regions a record suggests: its URLs' country TLDs (.fr -> FR) and its "
        "language's countries (de -> DE, AT, CH); at most curation.pii.phones.MAX_REGIONS in all.",
    )
    max_pixels: int = Field(PILLOW_MAX_PIXELS, ge=1, description="Decompression-bomb guard (Pillow's default).")
    blur_faces: bool = Field(True, description="Blur faces found by OpenCV's frontal-face Haar cascade.")
    face_scale_factor: float = Field(
        1.1, gt=1.0, description="detectMultiScale scaleFactor; 1.1 is OpenCV's documented default."
    )
    face_min_neighbors: int = Field(
        3,
        ge=0,
        description="detectMultiScale minNeighbors; 3 is OpenCV's documented default. Lower than the 5 many "
        "tutorials use on purpose: a false blur costs little, a missed face leaks identity.",
    )
    face_min_size: int = Field(
        24,
        ge=1,
        description="Smallest face side in px; 24 is the cascade's training window, which is what "
        "detectMultiScale's default minSize=(0, 0) amounts to.",
    )
    face_detect_max_side: int = Field(
        1024,
        ge=64,
        description="Detect on a copy downscaled to this longest side, to bound cost (detection is ~0.15 s on a "
        "512x384 image on this 2-core machine, and grows with area); faces under face_min_size after the "
        "downscale are missed.",
    )
    face_verify: bool = Field(
        True,
        description="Keep a cascade box only if OpenCV's eye cascade finds an eye in its upper 60 %, or at least "
        "face_skin_fraction of its centre is skin-coloured, or the image has no colour (where skin cannot be "
        "told). Measured (bench/faces.py): boxes on 200 demo textures 4 -> 1; planted faces 100/100 -> 100/100; "
        "skimage's LFW faces (grey) 99/100 -> 99/100, 93/100 with the eye check alone.",
    )
    face_skin_fraction: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Share of the box's centre in the YCrCb skin range (Cr 133-173, Cb 77-127, Chai & Ngan) that "
        "keeps a box without eyes; planted faces measure 1.0, texture boxes 0.0-0.38 but one skin-coloured 1.0.",
    )
    face_box_margin: float = Field(
        0.2, ge=0.0, description="Enlarge each face box by this fraction per side: Haar boxes cut off hair and chin."
    )
    blur_sigma_fraction: float = Field(
        0.2,
        gt=0.0,
        le=1.0,
        description="Gaussian sigma as a fraction of the enlarged face box side. Measured on skimage's astronaut "
        "(tests/curation): from 0.1 the cascade no longer finds the face and Laplacian variance in the box falls "
        "from ~900 to ~2; 0.2 leaves margin for larger or higher-contrast faces.",
    )
    max_face_fraction: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="Drop images where one detected face box covers more than this fraction of the frame "
        "(close-up portraits, where blurring leaves nothing of use) as face_dominant. None keeps them.",
    )
    ocr_pii: bool = Field(
        True,
        description="Read text drawn inside images with tesseract (Debian's tesseract-ocr) and blur the words of "
        "every PII span the text detectors find in a line, like faces. Scrubbing raises if the binary is missing.",
    )
    ocr_min_side: int = Field(
        16, ge=1, description="Skip OCR on images whose shorter side is under this many px (no legible line fits)."
    )
    ocr_max_side: int = Field(
        2000,
        ge=64,
        description="Read on a copy downscaled to this longest side, to bound cost; tesseract reads text from "
        "about 10 px high, so a 4000 px scan keeps body text legible at 2000.",
    )
    ocr_timeout_s: float = Field(
        20.0,
        gt=0.0,
        description="Per-image limit on tesseract (~0.1-0.4 s per image here); an image past it is dropped as "
        "scrub_failed (its text is unknown) and counted in ocr_timeouts.",
    )
    ocr_binarized_read: bool = Field(
        True,
        description="Read each image a second time binarized (3x3 Gaussian, Otsu; curation.ocr.binarize) and blur "
        "the PII of both reads: on noisy light backgrounds and thin fonts tesseract's own thresholding misreads "
        "digits that this read gets right (tests/curation/test_ocr.py). Both copies go to the same "
        "tesseract as neighbouring pages of a batch: 17 -> 27 ms per image (bench/ocr_batch.py: 30 demo pictures "
        "and 4 drawn signs, 2 loaded cores); no extra box on the demo pictures.",
    )
    ocr_number_digits: int | None = Field(
        MISREAD_NUMBER_DIGITS,
        ge=1,
        description="Also blur every run of number words read in an image holding at least this many digits, with "
        "no checksum or numbering-plan check (curation.ocr.find_misread_numbers): OCR misreads digits, which "
        "breaks those checks while the number stays legible. Only while phone or credit_card is looked for; "
        "None turns it off.",
    )
    ocr_languages: str = Field(
        "eng", description="Tesseract -l value; each language needs its tesseract-ocr-* package."
    )
    jpeg_quality: int = Field(
        95,
        ge=1,
        le=100,
        description="Quality for re-encoded JPEGs: 95 is the top of Pillow's recommended range; higher only "
        "grows files, lower adds a second round of visible compression loss to training images.",
    )

    @model_validator(mode="after")
    def _hash_needs_key(self) -> ScrubConfig:
        if "hash" in self.policies.values() and not self.hash_key.get_secret_value():
            raise ValueError("a hash policy needs hash_key")
        return self

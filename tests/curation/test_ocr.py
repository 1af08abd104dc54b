"""Text drawn inside images: PII read by tesseract is blurred, harmless text is left alone, cost is bounded."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from curation_records import build_table, by_url, encode, image_row
from PIL import Image, ImageDraw, ImageFont

import curation.ocr as ocr
from curation.ocr import (
    OcrTimeout,
    OcrUnavailable,
    OcrWord,
    find_misread_numbers,
    lines_of,
    parse_tsv,
    pii_boxes,
    read_words,
)
from curation.pii import find_pii
from curation.scrub import ScrubConfig, ocr_pii_boxes, ocr_pii_boxes_in_batch, scrub, scrub_image

EMAIL = "jane.doe@example.com"
PHONE = "+1 415 555 0134"
DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")  # Debian's fonts-dejavu-core
U = "http://127.0.0.1/img/"


def font(size: int = 28) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans where Debian ships it, else the font built into Pillow (scalable since Pillow 10.1)."""
    return ImageFont.truetype(str(DEJAVU), size) if DEJAVU.exists() else ImageFont.load_default(size)


def text_picture(lines: list[str], size: tuple[int, int] = (820, 300)) -> Image.Image:
    """Dark text on a light, slightly noisy background, one string per line."""
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 4, (size[1], size[0], 3))
    img = Image.fromarray(np.clip(np.full((size[1], size[0], 3), (232, 226, 214)) + noise, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for k, line in enumerate(lines):
        draw.text((40, 40 + 80 * k), line, font=font(), fill=(25, 25, 30))
    return img


def read_text(data: bytes) -> str:
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return " ".join(word.text for word in read_words(rgb, 2000, 30))


def digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


PII_LINES = [f"Contact: {EMAIL}", f"Call {PHONE} today", "Fresh bread every morning"]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_email_and_phone_drawn_in_an_image_are_blurred(fmt):
    data = encode(text_picture(PII_LINES), fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    before = read_text(data)
    assert EMAIL in before and "4155550134" in digits(before)  # the plant is legible to begin with
    result = scrub_image(data, ScrubConfig())
    after = read_text(result.data)
    assert result.ocr_pii == 2
    assert "@" not in after and "example" not in after
    assert "555" not in digits(after) and "0134" not in digits(after)
    assert "Fresh bread every morning" in after and "Contact:" in after  # only the PII went


def test_harmless_text_is_not_blurred():
    img = text_picture(["Fresh bread every morning", "Open Monday to Saturday", "Since 1987, 12 Main Street"])
    data = encode(img, "PNG")
    result = scrub_image(data, ScrubConfig())
    assert result.ocr_pii == 0
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(result.data)).convert("RGB")), np.asarray(img))


def test_scrub_counts_ocr_blurs_and_uses_the_records_phone_regions():
    gb = text_picture(["Ring us on (020) 7946 0958"], (700, 140))
    table = build_table(
        [
            image_row(encode(text_picture(PII_LINES), "PNG"), U + "sign.png", 0),
            image_row(encode(gb, "PNG"), "http://shop.example.co.uk/img/gb.png", 1),
        ]
    )
    out = scrub(table, ScrubConfig())
    assert out.counters["ocr_pii_blurred"] == 3 and out.counters["ocr_timeouts"] == 0
    assert "7946" not in digits(read_text(by_url(out.kept, "image")["http://shop.example.co.uk/img/gb.png"]))
    off = scrub(table, ScrubConfig(ocr_pii=False))
    assert off.counters["ocr_pii_blurred"] == 0
    assert EMAIL in read_text(by_url(off.kept, "image")[U + "sign.png"])


def test_tiny_images_are_not_read(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tesseract ran on an image under ocr_min_side")

    monkeypatch.setattr("curation.scrub.read_words", refuse)
    assert scrub_image(encode(text_picture(["x"], (200, 12)), "PNG"), ScrubConfig()).ocr_pii == 0


def test_a_timeout_drops_the_image_and_a_missing_binary_raises(monkeypatch):
    data = encode(text_picture(PII_LINES), "PNG")
    with pytest.raises(OcrTimeout):
        scrub_image(data, ScrubConfig(ocr_timeout_s=0.001))
    out = scrub(build_table([image_row(data, U + "slow.png", 0)]), ScrubConfig(ocr_timeout_s=0.001))
    assert out.kept.num_rows == 0 and out.counters["scrub_failed"] == 1 and out.counters["ocr_timeouts"] == 1
    monkeypatch.setattr(ocr, "TESSERACT", "no-such-tesseract-binary")
    with pytest.raises(OcrUnavailable):
        scrub_image(data, ScrubConfig())
    assert scrub_image(data, ScrubConfig(ocr_pii=False)).ocr_pii == 0


def test_huge_images_are_read_downscaled_and_boxes_map_back(monkeypatch):
    seen = []
    real_run = ocr.subprocess.run

    def spy(command, **kwargs):
        seen.append(Image.open(io.BytesIO(kwargs["input"])).size)
        return real_run(command, **kwargs)

    monkeypatch.setattr(ocr.subprocess, "run", spy)
    big = text_picture(PII_LINES).resize((1640, 600))
    rgb = np.asarray(big)
    words = read_words(rgb, 820, 30)
    assert seen == [(820, 300)]
    email = next(w for w in words if "@" in w.text)
    x, y, w, _ = email.box
    assert 300 < x < 360 and 70 < y < 110 and 600 < w < 720  # full-size coordinates (drawn at 2x 166, 45)


TSV = """level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext
4\t1\t1\t1\t1\t0\t10\t10\t300\t20\t-1\t
5\t1\t1\t1\t1\t1\t10\t10\t40\t20\t95\tCall
5\t1\t1\t1\t1\t2\t60\t10\t30\t20\t95\t+1
5\t1\t1\t1\t1\t3\t100\t10\t40\t20\t95\t415
5\t1\t1\t1\t1\t4\t150\t10\t40\t20\t95\t555
5\t1\t1\t1\t1\t5\t200\t10\t50\t20\t95\t0134
5\t1\t1\t1\t1\t6\t260\t10\t50\t20\t95\ttoday
5\t1\t1\t1\t2\t1\t10\t50\t90\t20\t95\tharmless
5\t1\t1\t1\t2\t2\t110\t50\t40\t20\t95\t\x20
"""


def test_spans_map_back_to_the_union_of_their_words():
    words = parse_tsv(TSV)
    assert [w.text for w in words] == ["Call", "+1", "415", "555", "0134", "today", "harmless"]
    lines = lines_of(words)
    assert [text for text, _ in lines] == ["Call +1 415 555 0134 today", "harmless"]
    assert [(s, e) for s, e, _ in lines[0][1]][:2] == [(0, 4), (5, 7)]
    boxes = pii_boxes(words, find_pii, pad=0.5)
    assert boxes.tolist() == [[50, 0, 210, 40]]  # words 60..250 x 10..30, grown by 10 px per side
    assert parse_tsv(TSV, scale=0.5)[0] == OcrWord((1, 1, 1), "Call", (20, 20, 80, 40))


def test_a_batch_reads_each_image_as_its_own_process_would():
    pictures = [text_picture(PII_LINES), text_picture(["Ring us on (020) 7946 0958"], (700, 140))]
    pictures.append(text_picture(["Fresh bread"], (300, 90)).resize((1800, 540)))
    rgbs = [np.asarray(p) for p in pictures]
    alone = [read_words(rgb, 820, 30) for rgb in rgbs]
    together = ocr.read_words_in_batch(rgbs, 820, 30)
    assert together == alone
    assert EMAIL in " ".join(w.text for w in together[0])  # the pages are not empty to begin with
    # the page read at 820 px has its boxes in full-size coordinates
    assert max(w.box[0] + w.box[2] for w in together[2]) > 820


def test_a_batch_past_its_limit_gives_each_image_its_own_verdict():
    rgbs = [np.asarray(text_picture(PII_LINES)), np.asarray(text_picture(["Open Monday"], (400, 120)))]
    assert ocr.read_words_in_batch(rgbs, 2000, 0.001) == [None, None]
    table = build_table(
        [image_row(encode(Image.fromarray(rgb), "PNG"), f"{U}{k}.png", k) for k, rgb in enumerate(rgbs)]
    )
    out = scrub(table, ScrubConfig(ocr_timeout_s=0.001))
    assert out.kept.num_rows == 0 and out.counters["ocr_timeouts"] == 2 and out.counters["scrub_failed"] == 2


def test_long_numbers_with_misread_digits_are_found_and_short_or_wordy_numbers_are_not():
    # Tesseract's reads of drawn numbers: a card whose "6011" became "GOq1" (Luhn fails), a phone with S for 5.
    for line, number in [
        ("Card GOq1 1111 1111 1117 exp", "GOq1 1111 1111 1117"),
        ("Call (415) S55-2671 today", "(415) S55-2671"),
        ("tel +1-\u2014415-555-\u20140134", "+1-\u2014415-555-\u20140134"),
        ("Tel. 06 l2 34 56 78", "06 l2 34 56 78"),
    ]:
        assert [line[s.start : s.end] for s in find_misread_numbers(line)] == [number], line
    harmless = [
        "Since 1987, 12 Main Street",
        "2026-03-14 10:30",
        "Open 10:30-18:00, Mon-Sat",
        "$1,234.56 or 1.000.000 visitors",
        "Room 12 Floor 3 Desk 45",
        "ISBN-free 4417-2291",
        "Boss 2024 Gold",
    ]
    for line in harmless:
        assert find_misread_numbers(line) == [], line
    assert find_misread_numbers("0134 5678 9", min_digits=9) and not find_misread_numbers("0134 5678 9")


def hershey_card() -> np.ndarray:
    """A card number in OpenCV's Hershey font on a noisy light-blue background, as RGB pixels."""
    import cv2

    pixels = np.array(Image.new("RGB", (700, 120), (170, 205, 235)))
    cv2.putText(pixels, "6011 1111 1111 1117", (28, 70), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (10, 20, 60), 2, cv2.LINE_AA)
    return np.clip(pixels + np.random.default_rng(0).normal(0, 4, pixels.shape), 0, 255).astype(np.uint8)


def test_a_card_in_a_font_tesseract_misreads_is_read_binarized_and_blurred():
    """OpenCV's Hershey font on a noisy light background: tesseract's own read is letters ("Coy wld vidi wily");
    the binarized second read gets the digits."""
    data = encode(Image.fromarray(hershey_card()), "PNG")
    result = scrub_image(data, ScrubConfig())
    assert result.ocr_pii == 1
    assert "1111" not in digits(read_text(result.data)) and "1117" not in digits(read_text(result.data))


def test_a_batch_reads_both_copies_of_each_image_in_one_process_with_the_boxes_of_two_processes(monkeypatch):
    rgbs = [hershey_card(), np.asarray(text_picture(PII_LINES)), np.asarray(text_picture(["Fresh bread"]))]
    rgbs.append(np.asarray(text_picture(["Tel. 06 l2 34 56 78"], (500, 120))))
    cfg = ScrubConfig()
    alone = [ocr_pii_boxes(rgb, cfg) for rgb in rgbs]
    started = []
    run_tesseract = ocr._run_tesseract
    monkeypatch.setattr(ocr, "_run_tesseract", lambda *a: started.append(1) or run_tesseract(*a))
    together = ocr_pii_boxes_in_batch(rgbs, cfg, [None] * len(rgbs))
    assert len(started) == 1  # both reads of all four images from one tesseract
    assert [b.tolist() for b in together] == [b.tolist() for b in alone]
    assert [len(b) for b in together[:3]] == [1, 2, 0] and len(together[3]) >= 1  # card, email + phone, none, misread
    raw_only = ocr_pii_boxes_in_batch(rgbs[:1], cfg.model_copy(update={"ocr_binarized_read": False}), [None])
    assert len(raw_only[0]) == 0  # the card comes from the binarized read

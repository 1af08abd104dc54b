"""The scrub stage removes planted PII, EXIF GPS and faces, and never changes a record's identity."""

from __future__ import annotations

import io
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest
from curation_records import build_table, by_url, encode, image_row, smooth_image, text_row
from PIL import ExifTags, Image, PngImagePlugin
from skimage import data as skdata

from corpus.schema import empty
from curation.pii import ENTITIES, PiiSpan, find_pii, redact
from curation.scrub import (
    DROP_REASONS,
    SCRUB,
    SCRUB_VERSION,
    ScrubConfig,
    count_scrub,
    detect_faces,
    scrub,
    scrub_text_fields,
)

EMAIL = "jane.doe@example.com"
ALT_EMAIL = "photos+tag@studio.example.org"
US_PHONE = "(415) 555-2671"
INTL_PHONE = "+44 20 7946 0958"
GB_NATIONAL = "(020) 7946 0958"
CARD = "4111-1111-1111-1111"
CARD_PLAIN = "5500000000000004"
NOT_A_CARD = "4111 1111 1111 1112"  # fails Luhn
PLANTED = [EMAIL, ALT_EMAIL, US_PHONE, INTL_PHONE, CARD, CARD_PLAIN, "555-2671", "7946 0958", "1111-1111"]

U = "http://127.0.0.1/img/"
FACE_BOX = (177, 67, 93, 93)  # where the cascade finds the astronaut's face before scrubbing


def gps_jpeg() -> bytes:
    """A 64x48 JPEG with EXIF GPS and orientation 6 (displayed rotated 90 degrees: 48x64)."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    exif[ExifTags.Base.Make] = "PlantedCam"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (51.0, 30.0, 12.5)
    gps[ExifTags.GPS.GPSLongitudeRef] = "W"
    gps[ExifTags.GPS.GPSLongitude] = (0.0, 7.0, 39.0)
    data = encode(smooth_image(11, (64, 48)), "JPEG", quality=90, exif=exif)
    assert ExifTags.IFD.GPSInfo in Image.open(io.BytesIO(data)).getexif()  # the plant took
    return data


def face_jpeg() -> bytes:
    return encode(Image.fromarray(skdata.astronaut()), "JPEG", quality=90)


def rgba_png() -> bytes:
    rgba = np.dstack([np.asarray(smooth_image(12, (40, 40))), np.full((40, 40), 128, np.uint8)])
    return encode(Image.fromarray(rgba), "PNG")


@pytest.fixture
def scrub_table() -> pa.Table:
    body = (
        f"Write to {EMAIL} or call {US_PHONE}; from abroad {INTL_PHONE}. "
        f"Card {CARD} and {CARD_PLAIN}. Order number {NOT_A_CARD} is not a card. London office {GB_NATIONAL}."
    )
    rows = [
        text_row(body, "http://127.0.0.1/contact", 0, title=f"Contact {EMAIL}"),
        text_row("Nothing private here.", "http://127.0.0.1/about", 1, title="About"),
        image_row(gps_jpeg(), U + "gps.jpg", 2, alt_text=f"by {ALT_EMAIL}", caption=f"call {US_PHONE}"),
        image_row(face_jpeg(), U + "face.jpg", 3),
        image_row(rgba_png(), U + "rgba.png", 4),
        image_row(b"\x89PNG\r\n\x1a\n garbage", U + "broken.png", 5),
    ]
    return build_table(rows)


def string_values(table: pa.Table) -> list[str]:
    return [v for f in table.schema if pa.types.is_string(f.type) for v in table.column(f.name).to_pylist() if v]


def test_find_pii_finds_each_entity_and_redact_types_them():
    text = f"mail {EMAIL}, phone {US_PHONE}, intl {INTL_PHONE}, card {CARD}, order {NOT_A_CARD}"
    spans = find_pii(text)
    assert [s.entity for s in spans] == ["email", "phone", "phone", "credit_card"]
    assert all(isinstance(s, PiiSpan) for s in spans)
    assert redact(text, spans) == f"mail [EMAIL], phone [PHONE], intl [PHONE], card [CREDIT_CARD], order {NOT_A_CARD}"


def test_national_numbers_need_their_region():
    assert find_pii(f"office {GB_NATIONAL}") == []  # documented miss under the US default
    assert [s.entity for s in find_pii(f"office {GB_NATIONAL}", "US", ["GB"])] == ["phone"]


def test_scrub_removes_all_planted_pii_and_counts_it(scrub_table):
    out = scrub(scrub_table, ScrubConfig(extra_phone_regions=["GB"]))
    assert out.kept.num_rows + out.dropped.num_rows == scrub_table.num_rows
    for value in string_values(out.kept) + string_values(out.dropped):
        for planted in PLANTED:
            assert planted not in value
    text = by_url(out.kept, "text")["http://127.0.0.1/contact"]
    assert NOT_A_CARD in text  # Luhn-invalid: left alone
    assert text.count("[CREDIT_CARD]") == 2 and text.count("[PHONE]") == 3 and "[EMAIL]" in text
    counts = by_url(out.kept, "pii_counts")
    assert dict(counts["http://127.0.0.1/contact"]) == {"email": 2, "phone": 3, "credit_card": 2}
    assert dict(counts[U + "gps.jpg"]) == {"email": 1, "phone": 1}
    assert counts["http://127.0.0.1/about"] == []
    assert set(by_url(out.kept, "scrub_version").values()) == {SCRUB_VERSION}
    assert out.counters["pii_email"] == 3
    assert out.counters["pii_phone"] == 4
    assert out.counters["pii_credit_card"] == 2
    assert out.counters["records_with_pii"] == 2
    assert all(isinstance(v, int) for v in out.counters.values())  # no text can leak through counters


def test_scrub_strips_exif_keeps_orientation_and_identity(scrub_table):
    out = scrub(scrub_table, ScrubConfig())
    assert by_url(out.kept, "record_id") == {
        u: r for u, r in by_url(scrub_table, "record_id").items() if u != U + "broken.png"
    }
    cleaned = Image.open(io.BytesIO(by_url(out.kept, "image")[U + "gps.jpg"]))
    assert ExifTags.IFD.GPSInfo not in cleaned.getexif()
    assert len(cleaned.getexif()) == 0
    assert cleaned.format == "JPEG" and cleaned.size == (48, 64)
    assert (by_url(out.kept, "width")[U + "gps.jpg"], by_url(out.kept, "height")[U + "gps.jpg"]) == (48, 64)
    stripped = by_url(out.kept, "exif_stripped")
    assert stripped[U + "gps.jpg"] is True and stripped[U + "face.jpg"] is False
    assert out.counters["exif_stripped"] == 1
    png = Image.open(io.BytesIO(by_url(out.kept, "image")[U + "rgba.png"]))
    assert (png.format, png.mode, by_url(out.kept, "mime")[U + "rgba.png"]) == ("PNG", "RGBA", "image/png")


def test_scrub_blurs_the_face(scrub_table):
    cfg = ScrubConfig()
    before = np.asarray(Image.open(io.BytesIO(face_jpeg())).convert("RGB"))
    assert len(detect_faces(before, cfg)) >= 1
    out = scrub(scrub_table, cfg)
    after = np.asarray(Image.open(io.BytesIO(by_url(out.kept, "image")[U + "face.jpg"])).convert("RGB"))
    x, y, w, h = FACE_BOX
    assert not any(abs(fx - x) < w // 2 and abs(fy - y) < h // 2 for fx, fy, _, _ in detect_faces(after, cfg))
    assert after[y : y + h, x : x + w].std() < 0.5 * before[y : y + h, x : x + w].std()
    assert by_url(out.kept, "faces_blurred")[U + "face.jpg"] >= 1
    assert by_url(out.kept, "faces_blurred")[U + "gps.jpg"] == 0
    assert out.counters["faces_blurred"] >= 1 and out.counters["images_scrubbed"] == 3


def test_undecodable_image_is_dropped_as_scrub_failed_with_text_redacted():
    table = build_table([image_row(b"not an image", U + "x.png", 0, alt_text=f"mail {EMAIL}")])
    out = scrub(table, ScrubConfig())
    assert out.kept.num_rows == 0
    assert by_url(out.dropped, "drop_reason") == {U + "x.png": "scrub_failed"}
    assert by_url(out.dropped, "alt_text") == {U + "x.png": "mail [EMAIL]"}
    assert by_url(out.dropped, "image") == {U + "x.png": b"not an image"}


def test_nothing_is_dropped_from_clean_input():
    out = scrub(build_table([text_row("plain words", "http://127.0.0.1/a", 0)]), ScrubConfig())
    assert (out.kept.num_rows, out.dropped.num_rows) == (1, 0)
    assert out.dropped.column_names == out.kept.column_names


def test_stage_is_named_and_versioned():
    assert (SCRUB.name, SCRUB.version, SCRUB.apply) == ("scrub", SCRUB_VERSION, scrub)


def test_empty_input_gives_empty_outputs():
    out = scrub(empty())
    assert (out.kept.num_rows, out.dropped.num_rows, out.counters["records_with_pii"]) == (0, 0, 0)


def test_faces_are_found_through_the_detection_downscale():
    face = skdata.astronaut()
    small = detect_faces(face, ScrubConfig(face_detect_max_side=256))
    full = detect_faces(face, ScrubConfig())
    x, y, w, h = FACE_BOX
    for boxes in (small, full):
        assert any(abs(fx - x) < w // 3 and abs(fy - y) < h // 3 for fx, fy, _, _ in boxes)


def test_png_text_chunks_are_dropped_and_cmyk_jpeg_becomes_rgb():
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Jane Doe, 12 Planted Street")
    png = encode(smooth_image(13, (48, 48)), "PNG", pnginfo=info)
    cmyk = encode(smooth_image(14, (48, 48)).convert("CMYK"), "JPEG", quality=90)
    out = scrub(build_table([image_row(png, U + "text.png", 0), image_row(cmyk, U + "cmyk.jpg", 1)]))
    assert by_url(out.kept, "exif_stripped") == {U + "text.png": True, U + "cmyk.jpg": False}
    cleaned = Image.open(io.BytesIO(by_url(out.kept, "image")[U + "text.png"]))
    assert "Author" not in cleaned.info and b"Planted" not in by_url(out.kept, "image")[U + "text.png"]
    assert Image.open(io.BytesIO(by_url(out.kept, "image")[U + "cmyk.jpg"])).mode == "RGB"


def test_text_around_an_image_is_scrubbed_like_its_caption():
    row = image_row(encode(smooth_image(1)), "http://127.0.0.1/img/ctx.jpg", 0, caption="plain")
    row["context_text"] = "Write to lena.berg@example.net or call +1 415-555-0132 about this picture."
    out = scrub(build_table([row]), ScrubConfig())
    (context,) = out.kept.column("context_text").to_pylist()
    assert "lena.berg@example.net" not in context and "415-555-0132" not in context
    assert "[EMAIL]" in context and "[PHONE]" in context
    assert out.counters["pii_email"] == 1 and out.counters["pii_phone"] == 1


def test_scrub_text_fields_rewrites_each_field_and_counts_entities():
    fields = {"text": "mail jane@example.com or 555-0100", "title": None, "caption": "call +1 212 555 0100"}
    out, found, drop = scrub_text_fields(fields, ScrubConfig(), b"")
    assert out["text"].startswith("mail [EMAIL]") and out["caption"] == "call [PHONE]" and out["title"] is None
    assert found == {"email": 1, "phone": 1} and drop is False
    _, _, drop = scrub_text_fields(fields, ScrubConfig(policies={"email": "drop"}), b"")
    assert drop is True


def test_count_scrub_counts_every_entity_and_reason_and_no_text():
    counters = count_scrub(Counter({"email": 2, "faces_blurred": 1}), [None, "scrub_failed", "contains_pii"], 1)
    assert counters["pii_email"] == 2 and counters["faces_blurred"] == 1 and counters["records_with_pii"] == 1
    assert {f"pii_{e}" for e in ENTITIES} | set(DROP_REASONS) <= set(counters)
    assert (counters["scrub_failed"], counters["contains_pii"], counters["face_dominant"]) == (1, 1, 0)


def test_phone_regions_come_from_the_records_tld_and_language():
    rows = [
        text_row("Appelez le 06 12 34 56 78.", "http://shop.example.fr/contact", 0),
        text_row("Rufen Sie 030 901820 an.", "http://127.0.0.1/kontakt", 1),
        text_row("Call 06 12 34 56 78.", "http://127.0.0.1/plain", 2),
    ]
    rows[1]["lang"] = "de"
    out = by_url(scrub(build_table(rows), ScrubConfig()).kept, "text")
    assert out["http://shop.example.fr/contact"] == "Appelez le [PHONE]."
    assert out["http://127.0.0.1/kontakt"] == "Rufen Sie [PHONE] an."
    assert out["http://127.0.0.1/plain"] == "Call 06 12 34 56 78."  # no hint: not a US number
    assert scrub(build_table(rows[:1]), ScrubConfig(phone_region_hints=False)).kept.column("text")[0].as_py() == (
        "Appelez le 06 12 34 56 78."
    )

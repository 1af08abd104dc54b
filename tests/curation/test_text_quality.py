"""Language identification, Gopher quality rules and image checks: each planted defect found with its reason."""

from __future__ import annotations

import numpy as np
from curation_records import build_table, by_url, encode, image_row, smooth_image, text_row
from PIL import Image

from curation.curate import curate
from curation.curate_config import CurateConfig
from curation.images import get_information_score
from curation.quality import QualityConfig, detect_languages, find_quality_issue, get_quality_signals

P = "http://127.0.0.1/"
U = "http://127.0.0.1/img/"

GOOD = (
    "The committee met on Tuesday to review the budget for the coming year. Members agreed that the "
    "library should have longer opening hours, and that the funds for the new reading room would come "
    "from the reserve. The chair thanked the volunteers who had organised the book sale with great care, "
    "and asked that the minutes of the meeting be shared with all residents of the town before the next "
    "session in March."
)
FRENCH = (
    "Le comité s'est réuni mardi pour examiner le budget de l'année prochaine. Les membres ont convenu que "
    "la bibliothèque devrait ouvrir plus longtemps et que la nouvelle salle de lecture serait financée par "
    "la réserve."
)


def test_languages_are_identified_offline():
    codes, scores = detect_languages([GOOD, FRENCH, "这是一个关于图书馆预算的会议记录。", "", None])
    assert codes == ["en", "fr", "zh", None, None]
    assert (scores[:3] > 0.5).all() and (scores[3:] == 0).all()


def test_gopher_signals_and_rules_name_each_failure():
    cfg = QualityConfig(enabled=True)
    assert find_quality_issue(get_quality_signals(GOOD), cfg) is None
    planted = {
        "quality_word_count": "The cat sat on the mat with the dog.",
        "quality_symbol_ratio": GOOD + " #tag" * 30,
        "quality_bullet_lines": "\n".join(f"- the item {k} of the list and more words here" for k in range(60)),
        "quality_alpha_words": GOOD + " 12345 67890" * 60,
        "quality_stop_words": " ".join(f"token{k} alpha beta gamma" for k in range(30)),
        "quality_repeated_lines": "\n".join([GOOD] + ["Buy the best shoes with free delivery to the door"] * 5),
        "quality_repeated_ngrams": GOOD + " happy cats" * 60,
    }
    for reason, text in planted.items():
        assert find_quality_issue(get_quality_signals(text), cfg) == reason, reason
    signals = get_quality_signals(GOOD)
    assert signals["stop_words"] >= 2 and 0 <= signals["alpha_words"] <= 1


def test_curate_applies_language_and_quality_rules_only_when_enabled():
    rows = [
        text_row(GOOD, P + "good", 0),
        text_row(FRENCH, P + "french", 1),
        text_row("Buy now. Buy now. Buy now.", P + "spam", 2),
    ]
    table = build_table(rows)
    off = curate(table, CurateConfig())
    assert off.dropped.num_rows == 0
    assert by_url(off.kept, "lang") == {P + "good": "en", P + "french": "fr", P + "spam": "en"}
    on = curate(table, CurateConfig(quality=QualityConfig(enabled=True, languages=["en"])))
    assert by_url(on.dropped, "drop_reason") == {P + "french": "language_not_allowed", P + "spam": "quality_word_count"}
    assert on.counters["low_quality_pages"] == 2
    # French pages are only checked for language: Gopher's rules were set on English.
    fr = curate(table, CurateConfig(quality=QualityConfig(enabled=True)))
    assert by_url(fr.dropped, "drop_reason") == {P + "spam": "quality_word_count"}


def test_information_score_separates_flat_two_tone_and_photo_like_images():
    flat = Image.new("RGB", (64, 64), (200, 30, 30))
    two_tone = np.zeros((64, 64), np.uint8)
    two_tone[:, 32:] = 255
    assert get_information_score(flat) == 0.0
    assert abs(get_information_score(Image.fromarray(two_tone)) - 0.125) < 1e-9
    assert get_information_score(smooth_image(1)) > 0.8


def test_curate_drops_banners_and_blank_images_with_their_reasons():
    flat_jpeg = encode(Image.new("RGB", (200, 150), (250, 250, 250)), "JPEG", quality=85)
    banner = encode(smooth_image(21, (600, 100)))
    ok = encode(smooth_image(22, (300, 100)))  # exactly 3:1 is kept
    rows = [
        image_row(flat_jpeg, U + "blank.jpg", 0),
        image_row(banner, U + "banner.png", 1),
        image_row(ok, U + "ok.png", 2),
    ]
    out = curate(build_table(rows))
    assert by_url(out.dropped, "drop_reason") == {
        U + "blank.jpg": "low_information",
        U + "banner.png": "extreme_aspect_ratio",
    }
    assert out.kept.column("url").to_pylist() == [U + "ok.png"]
    assert (out.counters["low_information"], out.counters["extreme_aspect_ratio"]) == (1, 1)

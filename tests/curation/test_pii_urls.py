"""URLs lose their PII (credentials, query values, path segments, tokens) and keep where they point."""

from __future__ import annotations

from functools import partial

import pytest
from curation_records import build_table, by_url, encode, image_row, smooth_image, text_row

from curation.pii import find_pii, scrub_url, scrub_urls_in_text
from curation.scrub import ScrubConfig, scrub

FIND = partial(find_pii)

CASES = [
    ("http://127.0.0.1/img/gps.jpg", "http://127.0.0.1/img/gps.jpg", {}),
    ("https://e.com/blog/my-first-post-2024-edition/", "https://e.com/blog/my-first-post-2024-edition/", {}),
    ("https://e.com/550e8400-e29b-41d4-a716-446655440000", "https://e.com/550e8400-e29b-41d4-a716-446655440000", {}),
    ("https://e.com/p?id=12&sort=asc&page=", "https://e.com/p?id=12&sort=asc&page=", {}),
    ("https://jane:hunter2@e.com/x", "https://e.com/x", {"secret": 1}),
    ("https://e.com/u/jane.doe%40example.com/orders", "https://e.com/u/[EMAIL]/orders", {"email": 1}),
    ("https://e.com/u/jane.doe@example.com", "https://e.com/u/[EMAIL]", {"email": 1}),
    ("https://e.com/?email=jane%40example.com&page=2", "https://e.com/?email=[EMAIL]&page=2", {"email": 1}),
    ("https://e.com/?contact=jane%40example.com", "https://e.com/?contact=[EMAIL]", {"email": 1}),
    ("https://e.com/?tel=4155550134", "https://e.com/?tel=[PHONE]", {"phone": 1}),
    ("https://e.com/call/+14155550134", "https://e.com/call/[PHONE]", {"phone": 1}),
    ("https://e.com/s?q=call+415-555-0134", "https://e.com/s?q=call%20[PHONE]", {"phone": 1}),
    ("https://e.com/?name=Jane&surname=Doe", "https://e.com/?name=[PERSON]&surname=[PERSON]", {"person": 2}),
    ("https://e.com/?token=abc&api_key=k1", "https://e.com/?token=[SECRET]&api_key=[SECRET]", {"secret": 2}),
    ("https://e.com/#access_token=xyz&state=1", "https://e.com/#access_token=[SECRET]&state=[SECRET]", {"secret": 2}),
    ("https://b.s3.amazonaws.com/k.jpg?X-Amz-Signature=ab12&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE",
     "https://b.s3.amazonaws.com/k.jpg?X-Amz-Signature=[SECRET]&X-Amz-Credential=[SECRET]", {"secret": 2}),
    ("https://e.com/reset/9fK2mQ7xL4pR8sT1vW3yZ6bN/confirm", "https://e.com/reset/[SECRET]/confirm", {"secret": 1}),
    ("https://e.com/share/d41d8cd98f00b204e9800998ecf8427e", "https://e.com/share/[SECRET]", {"secret": 1}),
    ("https://e.com/?ip=192.168.10.254", "https://e.com/?ip=[IP_ADDRESS]", {"ip_address": 1}),
]  # fmt: skip


@pytest.mark.parametrize(("url", "expected", "counts"), CASES)
def test_scrub_url_rewrites_exactly_the_pii_parts(url, expected, counts):
    clean, found = scrub_url(url, FIND)
    assert (clean, dict(found)) == (expected, counts)


def test_url_policies_hash_and_mask_like_text():
    url = "https://e.com/?email=jane%40example.com&tel=4155550134"
    hashed, _ = scrub_url(url, FIND, policies={"email": "hash", "phone": "mask"}, key=b"k")
    assert hashed.startswith("https://e.com/?email=[EMAIL:") and hashed.endswith("&tel=******0134")
    assert scrub_url("https://e.com/?mail=JANE@example.com", FIND, policies={"email": "hash"}, key=b"k")[0] == (
        scrub_url("https://e.com/u/jane@example.com", FIND, policies={"email": "hash"}, key=b"k")[0].replace(
            "/u/", "/?mail="
        )
    )


def test_urls_in_text_are_scrubbed_and_the_sentence_kept():
    text = "See https://e.com/x?mail=a@b.com. Or www.e.com/u/jane@ex.com, ok"
    clean, found = scrub_urls_in_text(text, FIND)
    assert clean == "See https://e.com/x?mail=[EMAIL]. Or www.e.com/u/[EMAIL], ok"
    assert dict(found) == {"email": 2}


def test_scrub_stage_rewrites_url_and_page_url_and_counts_them():
    page = "https://shop.example.com/account?email=jane%40example.com&session=s3cr3t"
    img = "https://cdn.example.com/u/jane.doe@example.com/photo.jpg"
    row = image_row(encode(smooth_image(3)), img, 0, caption="see https://e.com/?token=abc")
    row["page_url"] = page
    text = text_row("Profile at https://e.com/u/jane.doe%40example.com today.", "https://e.com/?tel=4155550134", 1)
    out = scrub(build_table([row, text]), ScrubConfig())
    clean_img = "https://cdn.example.com/u/[EMAIL]/photo.jpg"
    assert by_url(out.kept, "page_url")[clean_img] == "https://shop.example.com/account?email=[EMAIL]&session=[SECRET]"
    assert by_url(out.kept, "caption")[clean_img] == "see https://e.com/?token=[SECRET]"
    assert by_url(out.kept, "text")["https://e.com/?tel=[PHONE]"] == "Profile at https://e.com/u/[EMAIL] today."
    assert dict(by_url(out.kept, "pii_counts")[clean_img]) == {"email": 2, "secret": 2}
    assert out.counters["pii_phone"] == 1 and out.counters["pii_email"] == 3
    out = scrub(build_table([text]), ScrubConfig(policies={"phone": "drop"}))
    assert by_url(out.dropped, "drop_reason") == {"https://e.com/?tel=[PHONE]": "contains_pii"}

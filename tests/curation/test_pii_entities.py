"""Every PII entity is found in its usual written forms, look-alikes are left alone, and each policy holds."""

from __future__ import annotations

import pytest
from curation_records import build_table, by_url, image_row, text_row
from pii_values import FOUND, IN_CONTEXT, NATIONAL, NOT_PII
from pydantic import ValidationError
from skimage import data as skdata

from curation.pii import find_pii, hash_value, iban_valid, mask_value, redact
from curation.scrub import ScrubConfig, scrub

P = "http://127.0.0.1/"


@pytest.mark.parametrize(("entity", "value"), FOUND)
def test_each_entity_is_found_in_context(entity, value):
    text = f"Details: {value} (see above)."
    spans = find_pii(text, extra_regions=["GB", "DE"])
    assert [(s.entity, text[s.start : s.end]) for s in spans] == [(entity, value)]


@pytest.mark.parametrize(("entity", "before", "value"), IN_CONTEXT)
def test_context_words_make_a_value_pii(entity, before, value):
    text = f"Details: {before} {value} (see above)."
    spans = find_pii(text)
    assert [(s.entity, text[s.start : s.end]) for s in spans] == [(entity, value)]


@pytest.mark.parametrize(("value", "region"), NATIONAL)
def test_national_phone_formats_are_found_under_their_region(value, region):
    text = f"Tel. {value} (office)."
    assert [text[s.start : s.end] for s in find_pii(text, "US", [region])] == [value]


def test_numbers_in_a_list_are_each_found():
    text = "Call 415.555.0134 / 415 555 0137, or fax 415-555-0199."
    assert [text[s.start : s.end] for s in find_pii(text)] == ["415.555.0134", "415 555 0137", "415-555-0199"]


def test_a_card_followed_by_another_number_is_cut_at_the_group():
    text = "card 4111 1111 1111 1111 2027"
    assert [text[s.start : s.end] for s in find_pii(text)] == ["4111 1111 1111 1111"]


@pytest.mark.parametrize("value", NOT_PII)
def test_look_alikes_are_not_pii(value):
    assert find_pii(f"Details: {value} (see above).", extra_regions=["GB", "DE", "FR"]) == []


def test_spans_map_back_through_invisible_characters():
    text = "x\u200b ja\u200bne@example.com and (415)\u00a0555\u20132671"
    spans = find_pii(text)
    assert [(s.entity, text[s.start : s.end]) for s in spans] == [
        ("email", "ja\u200bne@example.com"),
        ("phone", "(415)\u00a0555\u20132671"),
    ]
    assert redact(text, spans) == "x\u200b [EMAIL] and [PHONE]"


def test_iban_check_digits_decide():
    assert iban_valid("GB82 WEST 1234 5698 7654 32")
    assert not iban_valid("GB82 WEST 1234 5698 7654 33")
    assert not iban_valid("GB82 WEST 1234 5698 7654")  # wrong length for GB


def test_policies_redact_mask_and_hash_with_a_key():
    text = "Mail jane.doe@example.com or JANE.DOE@example.com, card 4111-1111-1111-1111."
    spans = find_pii(text)
    assert redact(text, spans) == "Mail [EMAIL] or [EMAIL], card [CREDIT_CARD]."
    assert redact(text, spans, {"credit_card": "mask"}).endswith("card ****-****-****-1111.")
    hashed = redact(text, spans, {"email": "hash"}, key=b"k1")
    tokens = [w.strip(",") for w in hashed.split() if w.startswith("[EMAIL:")]
    assert len(tokens) == 2 and tokens[0] == tokens[1]  # the same address gives the same token: joins work
    assert "jane" not in hashed.lower()
    assert hash_value("email", "jane.doe@example.com", b"k2") != tokens[0]  # keyed: another key, another token
    assert mask_value("email", "jo@ex.io") == "**@**.**"
    with pytest.raises(ValueError, match="key"):
        redact(text, spans, {"email": "hash"})
    with pytest.raises(ValidationError, match="hash_key"):
        ScrubConfig(policies={"email": "hash"})


def test_drop_policy_drops_the_record_with_its_reason_and_text_still_rewritten():
    table = build_table(
        [
            text_row("My SSN is 123-45-6789.", P + "ssn", 0),
            text_row("Write to jane.doe@example.com.", P + "mail", 1),
        ]
    )
    out = scrub(table, ScrubConfig(policies={"us_ssn": "drop"}))
    assert by_url(out.dropped, "drop_reason") == {P + "ssn": "contains_pii"}
    assert by_url(out.dropped, "text") == {P + "ssn": "My SSN is [US_SSN]."}
    assert by_url(out.kept, "text") == {P + "mail": "Write to [EMAIL]."}
    assert out.counters["contains_pii"] == 1 and out.counters["pii_us_ssn"] == 1 and out.counters["pii_email"] == 1


def test_report_config_never_shows_the_hash_key():
    cfg = ScrubConfig(policies={"email": "hash"}, hash_key="s3cret-key")
    assert "s3cret-key" not in str(cfg.model_dump(mode="json"))


def test_close_up_faces_can_be_dropped():
    from curation_records import encode
    from PIL import Image

    face = Image.fromarray(skdata.astronaut()).crop((150, 40, 300, 190))  # the face fills most of the frame
    table = build_table([image_row(encode(face, "JPEG", quality=90), "http://127.0.0.1/img/face.jpg", 0)])
    assert scrub(table, ScrubConfig()).dropped.num_rows == 0
    out = scrub(table, ScrubConfig(max_face_fraction=0.2))
    assert by_url(out.dropped, "drop_reason") == {"http://127.0.0.1/img/face.jpg": "face_dominant"}


def test_titled_names_are_people_and_bare_names_are_a_documented_miss():
    text = "Contact Dr. Jane Doe or Mr Li Wei. Hello, my name is Anna Maria Schmidt and I live here."
    spans = find_pii(text)
    names = [text[s.start : s.end] for s in spans if s.entity == "person"]
    assert names == ["Jane Doe", "Li Wei", "Anna Maria Schmidt"]
    text = "Dr. Seán O'Brien-Ní Dhuibhir met Mme Hélène d'Alembert and Herr Jürgen van der Berg. Dear Zoë Łukasiewicz,"
    names = [text[s.start : s.end] for s in find_pii(text)]
    assert names == ["Seán O'Brien-Ní Dhuibhir", "Hélène d'Alembert", "Jürgen van der Berg", "Zoë Łukasiewicz"]
    assert find_pii("Jane Doe said hello.") == []  # no name model: a bare name is not found


def test_a_credits_full_name_after_by_is_a_person_and_a_lone_capitalised_word_is_not():
    text = "Holiday by José Álvarez, 2019. Sketch by Siobhan O'Connor-Ng; mural by Jürgen van der Berg."
    names = [text[s.start : s.end] for s in find_pii(text) if s.entity == "person"]
    assert names == ["José Álvarez", "Siobhan O'Connor-Ng", "Jürgen van der Berg"]
    for text in ("Send it by Monday.", "Made by Google.", "Shipped by DHL", "Stand By Me", "by the river"):
        assert [s for s in find_pii(text) if s.entity == "person"] == [], text

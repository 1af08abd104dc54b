"""The cheap filters before phonenumbers' matcher: whole dates and short digit runs never reach it."""

from __future__ import annotations

import phonenumbers
import pytest

import curation.pii.phones as phones
from curation.pii import find_pii
from curation.pii.phones import find_phones, is_full_date


@pytest.mark.parametrize("run", ["14.03.2026", "03/14/2026", "14/03/2026", "2026-03-14", "2026.3.1", "1.1.1999"])
def test_whole_dates_are_dates(run):
    assert is_full_date(run)


@pytest.mark.parametrize("run", ["32.13.2026", "14.03.3026", "14.03-2026", "2026-13-01", "030 1234 5678", "14.03.26"])
def test_other_runs_are_not_dates(run):
    assert not is_full_date(run)


def test_dates_and_short_runs_skip_the_matcher_but_phones_do_not(monkeypatch):
    calls = []
    real = phonenumbers.PhoneNumberMatcher

    def spy(window, region, leniency):
        calls.append(window)
        return real(window, region, leniency=leniency)

    monkeypatch.setattr(phones.phonenumbers, "PhoneNumberMatcher", spy)
    text = "Due 14.03.2026 or 03/14/2026, rooms 100-200, at 48.8566, 2.3522. Tel. 030 1234 5678 or (415) 555-2671."
    found = find_phones(text, ["DE", "US", "GB", "AT"])
    assert [text[s.start : s.end] for s in found] == ["030 1234 5678", "(415) 555-2671"]
    assert all(any(c.isdigit() for c in w) for w in calls)
    assert not any("2026" in w or "100-200" in w or "48.8566" in w for w in calls)


def test_find_pii_keeps_every_planted_phone_next_to_dates():
    text = "Am 14.03.2026 erreichbar unter +49 30 1234 5678, sonst 24.12.2026 unter 089 1234567."
    spans = [text[s.start : s.end] for s in find_pii(text, "DE") if s.entity == "phone"]
    assert spans == ["+49 30 1234 5678", "089 1234567"]

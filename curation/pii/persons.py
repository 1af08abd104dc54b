"""Person names without a model: capitalised words after a title or a phrase that introduces a name."""

from __future__ import annotations

import re

from curation.pii.spans import PiiSpan


def _upper_class() -> str:
    """A regex class of every upper/title-case letter in the Basic Multilingual Plane (re has no \\p{Lu})."""
    codes = [c for c in range(0x10000) if chr(c).isupper() or chr(c).istitle()]
    ranges, first, last = [], codes[0], codes[0]
    for code in [*codes[1:], -1]:
        if code == last + 1:
            last = code
            continue
        ranges.append(re.escape(chr(first)) + ("-" + re.escape(chr(last)) if last > first else ""))
        first = last = code
    return "[" + "".join(ranges) + "]"


# A capitalised name word in any script, with inner apostrophes and hyphens kept ("O'Brien", "Jean-Luc",
# "Zoë", "d'Alembert").
_WORD = rf"(?:[dl]['’])?{_upper_class()}(?:[^\W\d_]|['’\-](?=[^\W\d_]))*"
_PARTICLE = r"(?:van|von|de|der|den|da|di|du|del|della|la|le|bin|ibn)\s+"
# Courtesy titles (English, German, French, Spanish, Italian) and phrases that put a name next: "my name is",
# a letter's "Dear" and sign-off, a photo credit. Case-sensitive titles, so "dr" in prose is not one.
_TITLE = r"\b(?:Mr|Mrs|Ms|Mx|Miss|Dr|Prof|Sir|Dame|Rev|Herr|Frau|Mme|Mlle|Sr|Sra|Dott|Ing)\.?\s+"
_PHRASE = (
    r"(?i:\bmy name is|\bi am|\bi'm|\bdear|\bsigned,?|\bregards,|\bsincerely,|\bphoto(?:graph)?(?:ed)? by"
    r"|\bwritten by|\bposted by|\bauthor:|\bcredit:)\s+"
)
_PERSON = re.compile(
    rf"(?:{_TITLE}|{_PHRASE}(?:{_TITLE})?)(?P<name>{_WORD}(?:\s+(?:{_PARTICLE})*{_WORD}){{0,3}})(?![\w'’\-])"
)
# A credit in a caption or alt text ("Holiday by José Álvarez", "Sketch by Siobhan O'Connor-Ng"): a lower-case
# "by" and a full name, at least two name words, since one capitalised word after "by" is as often a day, a
# month or a brand ("by Monday", "by Google"). Two capitalised words that are no person ("by New York")
# are redacted too: the cost of an over-redacted caption, against a name shown to annotators.
_CREDIT = re.compile(rf"\bby\s+(?P<name>{_WORD}(?:\s+(?:{_PARTICLE})*{_WORD}){{1,3}})(?![\w'’\-])")


def find_persons(text: str) -> list[PiiSpan]:
    """Names after a title, a phrase that introduces one, or a credit's "by" (curation.pii.find_pii orders and
    merges overlapping spans)."""
    spans = [PiiSpan("person", m.start("name"), m.end("name")) for m in _PERSON.finditer(text)]
    return spans + [PiiSpan("person", m.start("name"), m.end("name")) for m in _CREDIT.finditer(text)]

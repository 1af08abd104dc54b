"""Offset-keeping text normalisation: the separators, digits and invisible characters real pages use, as ASCII."""

from __future__ import annotations

from dataclasses import dataclass

# Dashes and minus signs of Unicode's Pd category plus U+2212 and the full-width/small forms.
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63"
# Every Zs space other than U+0020 (NBSP, en/em/thin/hair spaces, narrow NBSP, ideographic space).
_SPACES = "\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"
# Invisible characters pasted into addresses and numbers to defeat scrapers; removed, not mapped.
INVISIBLE = frozenset("\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e")
# Zero of each decimal script phone numbers are printed in (Arabic-Indic, Persian, Devanagari, Bengali, Thai).
_DIGIT_ZEROS = (0x0660, 0x06F0, 0x0966, 0x09E6, 0x0E50)


def _table() -> dict[int, str]:
    table = {ord(c): "-" for c in _DASHES} | {ord(c): " " for c in _SPACES}
    # Full-width ASCII (U+FF01..U+FF5E) is ASCII shifted by 0xFEE0: digits, letters, "@", "+", "(", ")".
    table |= {code: chr(code - 0xFEE0) for code in range(0xFF01, 0xFF5F)}
    table |= {zero + k: str(k) for zero in _DIGIT_ZEROS for k in range(10)}
    return table


_TABLE = _table()


@dataclass(frozen=True)
class Normalised:
    """`text` rewritten character by character; `origin[i]` is the source index of `text[i]` (None: identity)."""

    text: str
    origin: list[int] | None = None

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The source [start, end) of normalised [start, end): invisible characters inside it are inside it."""
        if self.origin is None:
            return start, end
        return self.origin[start], self.origin[end - 1] + 1


def normalise(text: str) -> Normalised:
    """`text` with dashes as "-", spaces as " ", full-width and other scripts' digits as ASCII, invisibles removed.

    Every character maps to at most one, so an offset found in the result maps back to `text` exactly.
    """
    if text.isascii():
        return Normalised(text)
    mapped = text.translate(_TABLE)
    if not any(c in INVISIBLE for c in mapped):
        return Normalised(mapped)
    kept = [(k, c) for k, c in enumerate(mapped) if c not in INVISIBLE]
    return Normalised("".join(c for _, c in kept), [k for k, _ in kept])

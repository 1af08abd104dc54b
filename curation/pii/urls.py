"""PII in URLs: credentials, query and fragment values, and path segments that carry an entity or a token."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, unquote_plus, urlsplit, urlunsplit

from curation.pii.policies import redact, rewrite
from curation.pii.spans import ENTITIES, PiiSpan

Finder = Callable[[str], list[PiiSpan]]
# Query keys whose value is PII whatever its shape, by what the key names (OAuth 2.0's access_token, code and
# state; session ids; signed-URL signatures; contact fields of forms submitted by GET).
_KEY_ENTITIES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)^(?:e-?mail|mail|email_?address|to|from|recipient)$"), "email"),
    (re.compile(r"(?i)^(?:phone|tel|telephone|mobile|cell|msisdn|fax)(?:_?number)?$"), "phone"),
    (re.compile(r"(?i)^(?:ssn|social_?security(?:_?number)?)$"), "us_ssn"),
    (re.compile(r"(?i)^(?:(?:first|last|full|given|family|sur)_?name|name|user(?:name)?|login|customer)$"), "person"),
    (
        re.compile(
            r"(?i)(?:token|key|secret|pass(?:word)?|pwd|session|sid|sig(?:nature)?|auth|credential|otp|nonce|"
            r"^code$|^state$|^ticket$|x-amz-security|x-goog-)"
        ),
        "secret",
    ),
)
# A path or value part that is a generated token: 16+ characters mixing letters and digits with no separator
# (reset links, share links, signed paths); a slug's words and a UUID's groups are shorter.
_TOKEN_PART = re.compile(r"^(?=[^\W_]*\d)(?=[^\W_]*[A-Za-z])[A-Za-z0-9]{16,}$")
_URL_IN_TEXT = re.compile(r"(?i)\b(?:https?://|www\.)[^\s<>\"'`]+[^\s<>\"'`.,;:!?)\]}]")


def _token_like(value: str) -> bool:
    return any(_TOKEN_PART.match(part) for part in re.split(r"[-_.~+/=]", value))


@dataclass
class _Rewriter:
    """One URL's rewriting: the text detector, the entities and policies in force, and what was found."""

    find: Finder
    entities: Sequence[str]
    policies: Mapping[str, str]
    key: bytes
    found: Counter[str] = field(default_factory=Counter)

    def value(self, raw: str, decode: Callable[[str], str]) -> str:
        """One path segment or query value: its PII rewritten, a token-like value as a secret; else unchanged."""
        value = decode(raw)
        spans = self.find(value)
        if spans:
            self.found.update(s.entity for s in spans)
            return quote(redact(value, spans, self.policies, self.key), safe="[]:@*!$'()+,;=")
        if "secret" in self.entities and _token_like(value):
            return self.entity("secret", value)
        return raw

    def entity(self, entity: str, value: str) -> str:
        self.found[entity] += 1
        return rewrite(entity, value, self.policies.get(entity, "redact"), self.key)

    def pairs(self, query: str) -> str:
        """`a=1&b=2` with each value rewritten: by what its key names, else by what it holds."""
        out = []
        for pair in query.split("&"):
            name, sep, raw = pair.partition("=")
            named = next((e for pattern, e in _KEY_ENTITIES if pattern.search(unquote_plus(name))), None)
            if sep and raw and named in self.entities:
                out.append(f"{name}={self.entity(named, unquote_plus(raw))}")
            elif sep:
                out.append(f"{name}={self.value(raw, unquote_plus)}")
            else:
                out.append(self.value(name, unquote_plus))
        return "&".join(out)


def scrub_url(
    url: str,
    find: Finder,
    entities: Sequence[str] = ENTITIES,
    policies: Mapping[str, str] | None = None,
    key: bytes = b"",
) -> tuple[str, Counter[str]]:
    """`url` with its PII rewritten by policy, and the entities found (pure: no network, no lookup).

    Gone: user:password@ credentials. Rewritten: query and fragment values whose key names PII (email=,
    token=, sig=, ...) or that hold an entity `find` finds, and path segments that hold one or look like a
    generated token (reported as secrets). Scheme, host and port stay as written, so the URL still shows
    where the record came from. `find` is the text detector (e.g. a `find_pii` partial).
    """
    rewriter = _Rewriter(find, entities, policies or {}, key)
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL at all (an unbalanced "[" in the host): scrub it as text
        spans = find(url)
        rewriter.found.update(s.entity for s in spans)
        return redact(url, spans, rewriter.policies, key), rewriter.found
    netloc = parts.netloc
    if "@" in netloc:
        netloc = netloc.rpartition("@")[2]
        rewriter.found["secret"] += 1
    path = "/".join(rewriter.value(s, unquote) if s else s for s in parts.path.split("/"))
    query = rewriter.pairs(parts.query) if parts.query else ""
    fragment = rewriter.pairs(parts.fragment) if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, path, query, fragment)), rewriter.found


def scrub_urls_in_text(
    text: str,
    find: Finder,
    entities: Sequence[str] = ENTITIES,
    policies: Mapping[str, str] | None = None,
    key: bytes = b"",
) -> tuple[str, Counter[str]]:
    """`text` with every http(s):// or www. URL in it passed through `scrub_url`; the entities found."""
    found: Counter[str] = Counter()
    pieces, cursor = [], 0
    for match in _URL_IN_TEXT.finditer(text):
        clean, counts = scrub_url(match.group(), find, entities, policies, key)
        found.update(counts)
        pieces += [text[cursor : match.start()], clean]
        cursor = match.end()
    pieces.append(text[cursor:])
    return "".join(pieces), found

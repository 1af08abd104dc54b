"""Secrets: vendor key formats, bearer/basic credentials, private keys, `key=value` secrets, high-entropy tokens."""

from __future__ import annotations

import math
import re
from collections import Counter

from curation.pii.spans import PiiSpan

# Vendor key formats, from the vendors' documentation (as gitleaks' and detect-secrets' rules quote them).
_SECRET_PREFIXES = re.compile(
    r"\b(?:"
    r"(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}"  # AWS access key ids
    r"|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,}"  # GitHub tokens
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack tokens
    r"|(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{20,}"  # Stripe keys
    r"|AIza[0-9A-Za-z_-]{35}|ya29\.[0-9A-Za-z_-]{20,}"  # Google API key, OAuth access token
    r"|sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"  # OpenAI / Anthropic keys
    r"|glpat-[A-Za-z0-9_-]{20}"  # GitLab personal token
    r"|SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}"  # SendGrid
    r"|npm_[A-Za-z0-9]{36}|pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}"  # npm, PyPI upload tokens
    r"|hf_[A-Za-z]{34}|dop_v1_[a-f0-9]{64}|SK[0-9a-f]{32}"  # Hugging Face, DigitalOcean, Twilio
    r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"  # JSON Web Token
    r")"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"
    r"|https://hooks\.slack\.com/services/[A-Za-z0-9/]{20,}"  # Slack webhook URL
)
# RFC 6750 / RFC 7617 credentials as written in headers and curl lines.
_AUTH_HEADER = re.compile(r"(?i)\b(?:bearer|basic|token)\s+([A-Za-z0-9._~+/=-]{16,})")
# `password = value`-style assignments: the value is a secret whatever its shape (detect-secrets' keyword rule).
# Azure connection strings' AccountKey / SharedAccessKey and SAS "sig=" are the same rule's cloud spellings.
# A value that is already a placeholder ("token=[SECRET]", from URL scrubbing) is not found twice.
_SECRET_ASSIGNMENT = re.compile(
    r"(?i)\b(?:[\w-]*(?:api[_-]?key|secret|token|passw(?:or)?d|pwd|auth|credential|accountkey|accesskey|"
    r"sharedaccesskey|private[_-]?key)[\w-]*|sig)\s*[:=]\s*[\"']?(?!\[[A-Z_]+[\]:])([^\s\"',;&]{8,})"
)
# Long base64-like runs (API keys without a known prefix): detect-secrets' Base64HighEntropyString limit, 4.5 bits.
_LONG_TOKEN = re.compile(r"(?<![\w/+=-])[A-Za-z0-9+/_-]{32,}={0,2}(?![\w/+=-])")
ENTROPY_LIMIT = 4.5


def shannon_entropy(value: str) -> float:
    """Bits per character of `value`'s character distribution (0 for one repeated character)."""
    counts = Counter(value)
    total = len(value)
    return -sum(c / total * math.log2(c / total) for c in counts.values())


def looks_random(token: str, limit: float = ENTROPY_LIMIT) -> bool:
    """Digits, upper and lower case letters mixed, at `limit` bits per character or more: a generated key."""
    mixed = any(c.isdigit() for c in token) and any(c.isupper() for c in token) and any(c.islower() for c in token)
    return mixed and shannon_entropy(token) >= limit


def find_secrets(text: str) -> list[PiiSpan]:
    spans = [PiiSpan("secret", m.start(), m.end()) for m in _SECRET_PREFIXES.finditer(text)]
    spans += [PiiSpan("secret", m.start(1), m.end(1)) for m in _AUTH_HEADER.finditer(text)]
    spans += [PiiSpan("secret", m.start(1), m.end(1)) for m in _SECRET_ASSIGNMENT.finditer(text)]
    spans += [PiiSpan("secret", m.start(), m.end()) for m in _LONG_TOKEN.finditer(text) if looks_random(m.group())]
    return spans

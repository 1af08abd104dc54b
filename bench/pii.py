"""PII benchmark: Flywheel's find_pii vs Presidio's AnalyzerEngine (pattern recognizers) on two labelled sets.

Run: `make bench-pii` (QUICK=1 for 500 texts per corpus). Corpora: "own" (bench/corpora.py, written beside
the detectors) and "formats" (bench/pii_formats.py: published national formats and real-world spellings,
each text with its page's TLD URL and language). Presidio is configured as its docs show for running
without a downloaded model: a spaCy pipeline saved from `spacy.blank("en")` as the NLP engine (tokens only,
no NER, so its PERSON recognizer finds nothing), its default predefined recognizers and phone regions, the
six structured entities asked for, score_threshold 0. Flywheel: `find_pii` with region US plus GB, and on
"formats" also the regions its page hints give (regions_from_hints, as the scrub stage does); Presidio's
recognizers take no per-text region. ratio = Flywheel texts/s over Presidio's.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpora import PII_ENTITIES, is_quick, make_pii_corpus, span_scores
from pii_formats import make_hinted_corpus

STRUCTURED = ("email", "phone", "credit_card", "iban", "ip_address", "us_ssn")
PRESIDIO_NAMES = {
    "EMAIL_ADDRESS": "email",
    "PHONE_NUMBER": "phone",
    "CREDIT_CARD": "credit_card",
    "IBAN_CODE": "iban",
    "IP_ADDRESS": "ip_address",
    "US_SSN": "us_ssn",
    "PERSON": "person",
}


def run_flywheel(
    texts: list[str], hints: list[tuple[str, str]] | None = None
) -> tuple[list[list[tuple[str, int, int]]], float]:
    from curation.pii import find_pii, regions_from_hints

    started = time.perf_counter()
    found = []
    for k, text in enumerate(texts):
        regions = regions_from_hints(["US", "GB"], hints[k][1], [hints[k][0]]) if hints else ["US", "GB"]
        found.append([(s.entity, s.start, s.end) for s in find_pii(text, regions[0], regions[1:])])
    return found, time.perf_counter() - started


def make_presidio(model_dir: Path):
    import spacy
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    spacy.blank("en").to_disk(model_dir)
    provider = NlpEngineProvider(
        nlp_configuration={"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": str(model_dir)}]}
    )
    return AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])


def run_presidio(texts: list[str], analyzer) -> tuple[list[list[tuple[str, int, int]]], float]:
    entities = list(PRESIDIO_NAMES)
    started = time.perf_counter()
    found = []
    for text in texts:
        results = analyzer.analyze(text=text, language="en", entities=entities, score_threshold=0.0)
        found.append([(PRESIDIO_NAMES[r.entity_type], r.start, r.end) for r in results])
    return found, time.perf_counter() - started


def compare(name: str, texts: list[str], gold: list, hints: list | None, analyzer) -> None:
    """Both sides over one corpus, taking turns on chunks of 100 texts so that load from other work on this
    shared machine falls on both alike; prints the per-entity table and the `bench pii` line."""
    presidio, flywheel, presidio_s, flywheel_s = [], [], 0.0, 0.0
    for start in range(0, len(texts), 100):
        chunk = texts[start : start + 100]
        found, seconds = run_presidio(chunk, analyzer)
        presidio += found
        presidio_s += seconds
        found, seconds = run_flywheel(chunk, hints[start : start + 100] if hints else None)
        flywheel += found
        flywheel_s += seconds
    ours = span_scores(flywheel, gold, PII_ENTITIES)
    theirs = span_scores(presidio, gold, PII_ENTITIES)
    n, planted = len(texts), sum(len(s) for s in gold)
    print(f"PII [{name}]: {n} texts, {planted} planted values; overlap >= half the planted span counts as found")
    print(f"{'entity':<13}{'gold':>6}{'FW prec':>9}{'FW rec':>8}{'Presidio prec':>15}{'Presidio rec':>14}")
    for entity in PII_ENTITIES:
        a, b = ours[entity], theirs[entity]
        # Precision of a side that found nothing is undefined: shown as "-".
        a_prec = f"{a['precision']:.3f}" if a["predicted"] else "-"
        b_prec = f"{b['precision']:.3f}" if b["predicted"] else "-"
        print(f"{entity:<13}{a['gold']:>6}{a_prec:>9}{a['recall']:>8.3f}{b_prec:>15}{b['recall']:>14.3f}")
    fw_rate, pr_rate = n / flywheel_s, n / presidio_s
    print(f"{'texts/s':<13}{'':>6}{fw_rate:>17.0f}{pr_rate:>29.0f}")
    min_p = min(ours[e]["precision"] for e in STRUCTURED)
    min_r = min(ours[e]["recall"] for e in STRUCTURED)
    pr_min_p = min(theirs[e]["precision"] for e in STRUCTURED)
    pr_min_r = min(theirs[e]["recall"] for e in STRUCTURED)
    print(
        f"bench pii {name}: texts={n} texts_per_s={fw_rate:.0f} min_precision={min_p:.3f} min_recall={min_r:.3f} "
        f"presidio_texts_per_s={pr_rate:.0f} presidio_min_precision={pr_min_p:.3f} "
        f"presidio_min_recall={pr_min_r:.3f} ratio={fw_rate / pr_rate:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=None)
    args = parser.parse_args()
    n = args.texts or (500 if is_quick() else 5000)
    logging.disable(logging.WARNING)  # tldextract's failed public-suffix fetch would log on every run
    own = make_pii_corpus(n, seed=0)
    formats = make_hinted_corpus(n, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        analyzer = make_presidio(Path(tmp) / "blank_en")
        run_presidio(own.texts[:20], analyzer)  # warm-up: first-use loading is not throughput
        run_flywheel(own.texts[:20])
        compare("own", own.texts, own.spans, None, analyzer)
        compare("formats", formats.texts, formats.spans, formats.hints, analyzer)


if __name__ == "__main__":
    main()

"""PII benchmark: Flywheel's find_pii vs Presidio's AnalyzerEngine (pattern recognizers) on one labelled set.

Run: `make bench-pii` (QUICK=1 for 500 texts). Presidio is configured as its docs show for running without a
downloaded model: a spaCy pipeline saved from `spacy.blank("en")` as the NLP engine (tokens only, no NER, so
its PERSON recognizer finds nothing), its default predefined recognizers, the six structured entities asked
for, score_threshold 0 and phone regions US/UK (its default list includes both). Flywheel: `find_pii` with
region US plus GB. ratio = Flywheel texts/s over Presidio's.
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


def run_flywheel(texts: list[str]) -> tuple[list[list[tuple[str, int, int]]], float]:
    from curation.pii import find_pii

    started = time.perf_counter()
    found = [[(s.entity, s.start, s.end) for s in find_pii(text, "US", ["GB"])] for text in texts]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=None)
    args = parser.parse_args()
    n = args.texts or (500 if is_quick() else 5000)
    logging.disable(logging.WARNING)  # tldextract's failed public-suffix fetch would log on every run
    corpus = make_pii_corpus(n, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        analyzer = make_presidio(Path(tmp) / "blank_en")
        run_presidio(corpus.texts[:20], analyzer)  # warm-up: first-use loading is not throughput
        run_flywheel(corpus.texts[:20])
        # The two sides take turns on chunks of 100 texts, so load from other work on this shared machine
        # falls on both alike.
        presidio, flywheel, presidio_s, flywheel_s = [], [], 0.0, 0.0
        for start in range(0, n, 100):
            chunk = corpus.texts[start : start + 100]
            found, seconds = run_presidio(chunk, analyzer)
            presidio += found
            presidio_s += seconds
            found, seconds = run_flywheel(chunk)
            flywheel += found
            flywheel_s += seconds
    ours = span_scores(flywheel, corpus.spans, PII_ENTITIES)
    theirs = span_scores(presidio, corpus.spans, PII_ENTITIES)
    planted = sum(len(s) for s in corpus.spans)
    print(f"PII: {n} texts, {planted} planted values; overlap >= half the planted span counts as found")
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
        f"bench pii: texts={n} texts_per_s={fw_rate:.0f} min_precision={min_p:.3f} min_recall={min_r:.3f} "
        f"presidio_texts_per_s={pr_rate:.0f} presidio_min_precision={pr_min_p:.3f} "
        f"presidio_min_recall={pr_min_r:.3f} ratio={fw_rate / pr_rate:.2f}"
    )


if __name__ == "__main__":
    main()

"""Benchmark corpora generated in code, deterministically: pages with planted near-duplicates, images with planted
transformed copies, texts with labelled PII. Nothing is downloaded."""

from __future__ import annotations

import io
import json
import os
import resource
import string
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance


def is_quick() -> bool:
    """QUICK=1 (from `make bench-NAME QUICK=1`) asks for the small size."""
    return os.environ.get("QUICK", "0") not in ("", "0", "false", "no")


def peak_rss_mb() -> float:
    """Peak resident memory of this process and of its largest finished child (the larger), in MiB.

    Own peak from /proc (VmHWM): getrusage's ru_maxrss survives execve, so a side started by the parent would
    report the parent's peak (the whole generated corpus) as its own.
    """
    with open("/proc/self/status", encoding="ascii") as fh:
        own = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0


def emit(result: dict) -> None:
    """Hand a side's result to the parent process: one JSON line on stdout, last."""
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


def _vocabulary(rng: np.random.Generator, size: int) -> list[str]:
    letters = np.array(list(string.ascii_lowercase))
    lengths = rng.integers(2, 11, size)
    words = {"".join(rng.choice(letters, k)) for k in lengths}
    return sorted(words)


def _zipf_words(rng: np.random.Generator, vocab: list[str], n: int) -> list[str]:
    # Word frequencies follow Zipf's law over a finite vocabulary (exponent ~1.1 in English corpora): the top
    # 10k of 30k words then cover ~95% of tokens, as the top 10k types of English web text roughly do.
    weights = 1.0 / np.arange(1, len(vocab) + 1) ** 1.1
    ranks = np.searchsorted(np.cumsum(weights / weights.sum()), rng.random(n))
    return [vocab[min(int(r), len(vocab) - 1)] for r in ranks]


def _sentences(words: list[str], rng: np.random.Generator) -> str:
    out, i = [], 0
    while i < len(words):
        k = int(rng.integers(8, 21))
        out.append(" ".join(words[i : i + k]).capitalize() + ".")
        i += k
    return " ".join(out)


@dataclass
class TextCorpus:
    texts: list[str]
    truth: np.ndarray  # (N,) int64: docs with equal values are planted near-duplicates of one another


def make_text_corpus(n_docs: int, seed: int = 0, copy_fraction: float = 0.1) -> TextCorpus:
    """`n_docs` web-page-like texts: Zipfian words, shared site boilerplate (hard negatives), and planted copies.

    A copy takes an earlier page and changes 0-4% of its words (substitute, delete or insert), sometimes
    cuts its tail or swaps its boilerplate: shingle Jaccard from ~1 down to ~0.6, so recall depends on the
    LSH threshold as it would on real crawls.
    """
    rng = np.random.default_rng(seed)
    vocab = _vocabulary(rng, 30_000)
    boiler = [_sentences(_zipf_words(rng, vocab, 30), rng) for _ in range(200)]
    n_copies = int(n_docs * copy_fraction)
    n_base = n_docs - n_copies
    texts: list[str] = []
    truth = np.arange(n_docs, dtype=np.int64)
    bodies: list[list[str]] = []
    for _ in range(n_base):
        length = int(np.clip(rng.lognormal(5.3, 0.5), 60, 1200))  # median ~200 words
        bodies.append(_zipf_words(rng, vocab, length))
    templates = rng.integers(0, len(boiler), n_base)
    for k in range(n_base):
        texts.append(f"{boiler[templates[k]]}\n{_sentences(bodies[k], rng)}\n{boiler[(templates[k] + 1) % 200]}")
    for c in range(n_copies):
        original = int(rng.integers(0, n_base))
        words = list(bodies[original])
        rate = rng.uniform(0.0, 0.04)
        edits = rng.random(len(words)) < rate
        kinds = rng.integers(0, 3, len(words))
        out: list[str] = []
        for w, edited, kind in zip(words, edits, kinds, strict=True):
            if not edited:
                out.append(w)
            elif kind == 0:
                out.append(vocab[int(rng.integers(0, len(vocab)))])
            elif kind == 1:
                out.extend([w, vocab[int(rng.integers(0, len(vocab)))]])
            # kind 2: the word is deleted
        if rng.random() < 0.2:
            out = out[: int(len(out) * rng.uniform(0.85, 1.0))]
        template = templates[original] if rng.random() < 0.7 else int(rng.integers(0, 200))
        texts.append(f"{boiler[template]}\n{_sentences(out, rng)}\n{boiler[(template + 1) % 200]}")
        truth[n_base + c] = original
    order = rng.permutation(n_docs)  # copies are not all at the end
    return TextCorpus([texts[i] for i in order], truth[order])


def pair_scores(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Pairwise precision, recall and F1 of a clustering (N,) against the planted one (N,).

    A pair is a duplicate when both documents share a cluster; counts come from the contingency table.
    """

    def pairs(labels: np.ndarray) -> int:
        _, counts = np.unique(labels, return_counts=True)
        return int((counts * (counts - 1) // 2).sum())

    _, joint = np.unique(np.stack([predicted, truth], axis=1), axis=0, return_inverse=True)
    both = pairs(joint.ravel())
    found, planted = pairs(predicted), pairs(truth)
    precision = both / found if found else 1.0
    recall = both / planted if planted else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "pairs_found": found, "pairs_planted": planted}


def _photo(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A distinct photo-like image: a low-frequency colour field, a few shapes, and sensor-like noise."""
    w, h = size
    coarse = rng.integers(0, 256, (int(rng.integers(3, 9)), int(rng.integers(3, 9)), 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC)).astype(np.int16)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(int(rng.integers(2, 6))):
        cx, cy, r = rng.integers(0, w), rng.integers(0, h), rng.integers(min(w, h) // 10, min(w, h) // 3)
        base[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.integers(0, 256, 3)
    base += rng.integers(-12, 13, base.shape, dtype=np.int16)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def _transform(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """One of the issue's transforms: resize, JPEG re-encode (done by the caller), small crop, brightness."""
    kind = int(rng.integers(0, 4))
    w, h = image.size
    if kind == 0:
        scale = rng.uniform(0.4, 0.8)
        return image.resize((max(32, int(w * scale)), max(32, int(h * scale))), Image.Resampling.BILINEAR)
    if kind == 1:
        return image  # the re-encode alone, at a lower quality
    if kind == 2:
        dx, dy = int(w * rng.uniform(0.0, 0.05)), int(h * rng.uniform(0.0, 0.05))
        return image.crop((dx, dy, w - int(w * rng.uniform(0.0, 0.05)), h - dy))
    return ImageEnhance.Brightness(image).enhance(rng.uniform(0.8, 1.2))


@dataclass
class ImageCorpus:
    images: list[bytes]
    truth: np.ndarray  # (N,) int64: images with equal values are an original and its transformed copies


def make_image_corpus(n_images: int, seed: int = 0, copy_fraction: float = 0.2) -> ImageCorpus:
    """`n_images` JPEGs (200-480 px sides): distinct photo-like originals plus planted transformed copies."""
    rng = np.random.default_rng(seed)
    n_copies = int(n_images * copy_fraction)
    n_base = n_images - n_copies
    originals: list[Image.Image] = []
    data: list[bytes] = []
    for _ in range(n_base):
        size = (int(rng.integers(200, 481)), int(rng.integers(200, 481)))
        image = _photo(rng, size)
        originals.append(image)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        data.append(buffer.getvalue())
    truth = np.arange(n_images, dtype=np.int64)
    for c in range(n_copies):
        original = int(rng.integers(0, n_base))
        copy = _transform(originals[original], rng)
        buffer = io.BytesIO()
        copy.save(buffer, "JPEG", quality=int(rng.integers(50, 86)))
        data.append(buffer.getvalue())
        truth[n_base + c] = original
    order = rng.permutation(n_images)
    return ImageCorpus([data[i] for i in order], truth[order])


@dataclass
class PiiCorpus:
    texts: list[str]
    spans: list[list[tuple[str, int, int]]]  # per text: (entity, start, end) of every planted value


_US_AREAS = ("212", "312", "415", "617", "206", "303", "404", "512", "646", "718", "202", "305")
_FIRST = ("Jane", "John", "Maria", "Wei", "Aisha", "Lars", "Sofia", "Kenji", "Omar", "Emma", "Lucas", "Nina")
_LAST = ("Doe", "Smith", "Garcia", "Chen", "Khan", "Berg", "Rossi", "Tanaka", "Haddad", "Brown", "Silva", "Novak")
_DOMAINS = ("example.com", "mail.example.org", "corp.example.net", "uni.example.edu")
_FILLER = (
    "Thanks for your order, it will ship within two business days.",
    "The meeting moved to the third floor conference room.",
    "Version 2.4.1 fixes the login bug reported last week.",
    "Order 4417-2291-0831 was refunded on 2026-03-14 for $129.99.",
    "Call us any weekday between 9 and 5; see chapter 12, page 345.",
    "ISBN 978-3-16-148410-0 is out of stock until March.",
    "Our office is open from 08:30 to 17:00 except public holidays.",
    "The build 10.0.19045 ran 1,234 tests in 56.7 seconds.",
)


def _luhn_complete(prefix: str, length: int, rng: np.random.Generator) -> str:
    body = prefix + "".join(str(d) for d in rng.integers(0, 10, length - len(prefix) - 1))
    for check in range(10):
        digits = [int(c) for c in body + str(check)]
        total = sum(d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(reversed(digits)))
        if total % 10 == 0:
            return body + str(check)
    raise AssertionError("unreachable")


def _iban(country: str, bban: str) -> str:
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    compact = f"{country}{98 - int(numeric) % 97:02d}{bban}"
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


def _pii_value(entity: str, rng: np.random.Generator) -> str:
    pick = lambda seq: seq[int(rng.integers(0, len(seq)))]  # noqa: E731
    digits = lambda n: "".join(str(d) for d in rng.integers(0, 10, n))  # noqa: E731
    if entity == "email":
        return f"{pick(_FIRST).lower()}.{pick(_LAST).lower()}{int(rng.integers(1, 99))}@{pick(_DOMAINS)}"
    if entity == "phone":
        import phonenumbers

        while True:
            style = int(rng.integers(0, 3))
            if style == 0:
                value = f"({pick(_US_AREAS)}) {int(rng.integers(2, 10))}{digits(2)}-{digits(4)}"
            elif style == 1:
                value = f"+44 20 7{digits(3)} {digits(4)}"
            else:
                value = f"+1 {pick(_US_AREAS)}-{int(rng.integers(2, 10))}{digits(2)}-{digits(4)}"
            if phonenumbers.is_valid_number(phonenumbers.parse(value, "US")):
                return value
    if entity == "credit_card":
        number = _luhn_complete(pick(("4", "51", "55", "37")), 15 if rng.random() < 0.2 else 16, rng)
        sep = pick(("", " ", "-"))
        return sep.join(number[i : i + 4] for i in range(0, len(number), 4)) if sep else number
    if entity == "iban":
        country = pick(("DE", "GB", "FR", "NL"))
        bban = {
            "DE": digits(18),
            "GB": "WEST" + digits(14),
            "FR": digits(23),
            "NL": "ABNA" + digits(10),
        }[country]
        value = _iban(country, bban)
        return value if rng.random() < 0.5 else value.replace(" ", "")
    if entity == "ip_address":
        if rng.random() < 0.7:
            return ".".join(str(int(x)) for x in rng.integers(1, 255, 4))
        return ":".join(f"{int(x):x}" for x in rng.integers(0, 65536, 8))
    if entity == "us_ssn":
        return f"{int(rng.integers(1, 666)):03d}-{int(rng.integers(1, 100)):02d}-{int(rng.integers(1, 10000)):04d}"
    if entity == "person":
        return f"{pick(_FIRST)} {pick(_LAST)}"
    raise ValueError(entity)


_TEMPLATES = {
    "email": ("Contact {} for details.", "Email: {}", "send the file to {} today"),
    "phone": ("Call {} after 6pm.", "Phone: {}", "reach the desk at {} anytime"),
    "credit_card": ("Paid with card {} yesterday.", "Card number: {}", "charge {} for the deposit"),
    "iban": ("Wire the amount to IBAN {} please.", "IBAN: {}", "account {} at the bank"),
    "ip_address": ("Login from {} was blocked.", "Server IP: {}", "requests from {} spiked"),
    "us_ssn": ("SSN {} on file.", "Social Security number: {}", "the form lists {} as SSN"),
    "person": ("Signed, Dr. {}.", "Please ask Ms. {} first.", "my name is {} and I agree"),
}
PII_ENTITIES = tuple(_TEMPLATES)


def make_pii_corpus(n_texts: int, seed: int = 0) -> PiiCorpus:
    """`n_texts` short documents (3-8 sentences) mixing filler with look-alikes and 0-3 planted PII values."""
    rng = np.random.default_rng(seed)
    texts, spans = [], []
    for _ in range(n_texts):
        parts: list[str] = []
        found: list[tuple[str, int, int]] = []
        length = 0
        for _ in range(int(rng.integers(3, 9))):
            if rng.random() < 0.35:
                entity = PII_ENTITIES[int(rng.integers(0, len(PII_ENTITIES)))]
                value = _pii_value(entity, rng)
                template = _TEMPLATES[entity][int(rng.integers(0, 3))]
                sentence = template.format(value)
                offset = length + template.index("{}")
                found.append((entity, offset, offset + len(value)))
            else:
                sentence = _FILLER[int(rng.integers(0, len(_FILLER)))]
            parts.append(sentence)
            length += len(sentence) + 1
        texts.append(" ".join(parts))
        spans.append(found)
    return PiiCorpus(texts, spans)


def span_scores(
    predicted: list[list[tuple[str, int, int]]], gold: list[list[tuple[str, int, int]]], entities: tuple[str, ...]
) -> dict[str, dict[str, float]]:
    """Per entity: precision and recall of predicted spans; a prediction counts when it overlaps a gold span of
    the same entity by at least half of the gold span."""

    def hit(a: tuple[str, int, int], b: tuple[str, int, int]) -> bool:
        overlap = min(a[2], b[2]) - max(a[1], b[1])
        return a[0] == b[0] and overlap >= 0.5 * (b[2] - b[1])

    out = {}
    for entity in entities:
        tp_pred = n_pred = tp_gold = n_gold = 0
        for pred, true in zip(predicted, gold, strict=True):
            p = [s for s in pred if s[0] == entity]
            g = [s for s in true if s[0] == entity]
            n_pred += len(p)
            n_gold += len(g)
            tp_pred += sum(any(hit(x, y) for y in g) for x in p)
            tp_gold += sum(any(hit(x, y) for x in p) for y in g)
        out[entity] = {
            "precision": tp_pred / n_pred if n_pred else 1.0,
            "recall": tp_gold / n_gold if n_gold else 1.0,
            "gold": n_gold,
            "predicted": n_pred,
        }
    return out


def spawn_side(script: str, side: str, work: Path) -> dict | None:
    """Run one side of a benchmark in its own process (so peak memory is its own) and return its RESULT line.

    None, with the side's stderr printed, when it failed: the other side's figures still get reported.
    """
    proc = subprocess.run(
        [sys.executable, script, "--side", side, "--work", str(work)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        print(f"{side} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(line[len("RESULT ") :])

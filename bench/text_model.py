"""Text model benchmark: Flywheel's hashed n-gram classifier (fastText-style, torch) vs scikit-learn's logistic
regression on TF-IDF of the same hashed n-grams, on the sample site's topic texts, in one run.

Both read the same features (corpus.text_features), train on the same labeled pages (with a share of flipped
labels, as a crowd leaves them) and are scored on the same held-out pages; the runs alternate per repeat so
machine noise hits both. Prints accuracy, macro F1 and fit seconds of each and the Flywheel / peer ratios.
Run: `.venv/bin/python bench/text_model.py` (QUICK=1 for a small run).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pyarrow as pa
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from pipelines.demo.sample_texts import TOPICS, make_topic_text, make_topic_title
from training.config import TrainConfig
from training.text_model import compute_text_probs, featurize
from training.text_train import fit_text_model

QUICK = os.environ.get("QUICK") == "1"
N_TRAIN = 80 if QUICK else 400  # labeled pages (a few rounds' worth)
N_TEST = 200 if QUICK else 800
REPEATS = 2 if QUICK else 3
LABEL_NOISE = 0.1  # flipped labels, about what Dawid-Skene leaves of the demo crowd's 5/10/20% errors


def make_split(n: int, rng: np.random.Generator) -> tuple[pa.Table, np.ndarray]:
    topics = rng.integers(0, len(TOPICS), size=n)
    rows = {
        "title": [make_topic_title(TOPICS[k], rng) for k in topics],
        "text": [make_topic_text(TOPICS[k], rng, sentences=int(rng.integers(2, 8))) for k in topics],
    }
    return pa.table(rows), topics


def run_flywheel(x_train, y_train, x_test, seed: int) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    cfg = TrainConfig(epochs=15, batch_size=32, seed=seed, device="cpu")
    empty = (x_train[:0], y_train[:0])  # no val split: the last epoch is kept
    model, _ = fit_text_model((x_train, y_train), empty, len(TOPICS), cfg)
    seconds = time.perf_counter() - started
    probs, _ = compute_text_probs(model, x_test)
    return probs.argmax(1), seconds


def run_peer(x_train, y_train, x_test, seed: int) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    tfidf = TfidfTransformer(sublinear_tf=True).fit(x_train)
    clf = LogisticRegression(max_iter=1000, random_state=seed).fit(tfidf.transform(x_train), y_train)
    seconds = time.perf_counter() - started
    return clf.predict(tfidf.transform(x_test)), seconds


def main() -> None:
    results: dict[str, list[tuple[float, float, float]]] = {"flywheel": [], "peer": []}
    for rep in range(REPEATS):
        rng = np.random.default_rng(rep)
        train_t, y_train = make_split(N_TRAIN, rng)
        test_t, y_test = make_split(N_TEST, rng)
        flip = rng.random(N_TRAIN) < LABEL_NOISE
        noisy = np.where(flip, (y_train + rng.integers(1, len(TOPICS), N_TRAIN)) % len(TOPICS), y_train)
        x_train, x_test = featurize(train_t), featurize(test_t)
        runners = [("flywheel", run_flywheel), ("peer", run_peer)]
        for name, runner in runners if rep % 2 == 0 else runners[::-1]:
            predicted, seconds = runner(x_train, noisy, x_test, rep)
            acc = float((predicted == y_test).mean())
            results[name].append((acc, float(f1_score(y_test, predicted, average="macro")), seconds))
    print(f"{N_TRAIN} train pages ({LABEL_NOISE:.0%} flipped labels), {N_TEST} test pages, {REPEATS} repeats")
    means = {name: np.mean(np.asarray(rows), axis=0) for name, rows in results.items()}
    for name, label in (("flywheel", "Flywheel HashedNgramClassifier"), ("peer", "sklearn LogisticRegression")):
        acc, f1, seconds = means[name]
        print(f"{label:34s} accuracy {acc:.3f}  macro F1 {f1:.3f}  fit {seconds:.2f} s")
    fly, peer = means["flywheel"], means["peer"]
    print(f"ratio Flywheel / peer: accuracy {fly[0] / peer[0]:.3f}, fit time {fly[2] / peer[2]:.2f}x")


if __name__ == "__main__":
    main()

"""Label-efficiency benchmark: accuracy vs labels for each selection strategy against random, several seeds.

Strategies include typiclust (every round by TypiClust, no model) and typiclust+hybrid (TypiClust cold start,
then hybrid). Data ships in packages or is generated: scikit-learn's digits (8x8, 10 classes), scikit-image's LFW subset
(faces vs non-faces, 25x25) and the sample site's four classes (generated, embedded with
labeling.selection.compute_cheap_embeddings, as the pipeline's cold start does). The model is a logistic
regression over standardised features, retrained each round; its "embedding" for core-set/hybrid is a PCA
of the features (fitted on the unlabeled pool, no labels). Selection is labeling.selection.select_batch, the
code plan_round runs. Run: `.venv/bin/python bench/label_efficiency.py` (QUICK=1 for a small run).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from labeling.selection import select_batch

DEFAULT = "hybrid"
# typiclust: every round by TypiClust over the PCA embeddings, no model (the paper's low-budget setting);
# typiclust+hybrid: TypiClust for the cold start, hybrid once a model exists.
ALL_STRATEGIES = (
    "random",
    "least-confidence",
    "margin",
    "entropy",
    "coreset",
    "hybrid",
    "typiclust",
    "typiclust+hybrid",
)


@dataclass
class Dataset:
    name: str
    x: np.ndarray
    y: np.ndarray
    batch: int
    budgets: tuple[int, ...]  # label counts at which random's accuracy is the target


def load_digits_data() -> Dataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return Dataset("digits", digits.data.astype(np.float64), digits.target, 10, (100, 200, 300, 400))


def load_faces_data() -> Dataset:
    from skimage.data import lfw_subset

    images = lfw_subset().astype(np.float64) / 255.0
    y = np.array([1] * 100 + [0] * 100)  # the first 100 are faces (skimage docs)
    return Dataset("lfw-faces", images.reshape(len(images), -1), y, 4, (20, 40, 60))


def load_sample_site_data(per_class: int) -> Dataset:
    from labeling.selection import compute_cheap_embeddings
    from pipelines.demo.sample_site import generate_site

    with tempfile.TemporaryDirectory() as tmp:
        truth = generate_site(Path(tmp), seed=7, images_per_class=per_class)
        classes = truth["classes"]
        rows = [(p, e["label"]) for p, e in truth["images"].items() if e["label"] and not e["defects"]]
        data = [(Path(tmp) / "site" / p.lstrip("/")).read_bytes() for p, _ in rows]
    x = compute_cheap_embeddings(data).astype(np.float64)
    y = np.array([classes.index(label) for _, label in rows])
    return Dataset("sample-site", x, y, 8, (40, 80, 120))


def _fit_predict(x_lab: np.ndarray, y_lab: np.ndarray, x_eval: list[np.ndarray], k: int) -> list[np.ndarray]:
    """Class probabilities (n, k) for each array of `x_eval`; classes not labeled yet get probability 0."""
    if len(np.unique(y_lab)) < 2:
        return [np.full((len(x), k), 1.0 / k) for x in x_eval]
    scaler = StandardScaler().fit(x_lab)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(max_iter=200, tol=1e-3).fit(scaler.transform(x_lab), y_lab)
    out = []
    for x in x_eval:
        probs = np.zeros((len(x), k))
        probs[:, model.classes_] = model.predict_proba(scaler.transform(x))
        out.append(probs)
    return out


def run_curve(data: Dataset, strategy: str, seed: int, max_labels: int, pool_factor: int = 3) -> dict[int, float]:
    """Test accuracy after each round: labels -> accuracy, for one strategy and seed."""
    x_pool, x_test, y_pool, y_test = train_test_split(data.x, data.y, test_size=0.3, stratify=data.y, random_state=seed)
    k = int(data.y.max()) + 1
    emb = PCA(n_components=min(32, x_pool.shape[1]), random_state=seed).fit_transform(
        StandardScaler().fit_transform(x_pool)
    )
    labeled = np.zeros(len(x_pool), dtype=bool)
    curve: dict[int, float] = {}
    rng_seed = seed * 1000
    pool_probs = None  # the current model's probabilities over the whole pool
    while labeled.sum() < min(max_labels, len(x_pool)):
        free = np.flatnonzero(~labeled)
        b = min(data.batch, max_labels - int(labeled.sum()), len(free))
        if strategy == "random":
            picks, _ = select_batch("random", b, n=len(free), seed=rng_seed + int(labeled.sum()))
        elif strategy == "typiclust" or (strategy == "typiclust+hybrid" and pool_probs is None):
            picks, _ = select_batch(
                "typiclust", b, n=len(free), cold_embeddings=emb[free], labeled_embeddings=emb[labeled], seed=seed
            )
        elif pool_probs is None:
            # Cold start for every Flywheel strategy: diversity (k-center) over unsupervised embeddings.
            picks, _ = select_batch("diversity", b, n=len(free), cold_embeddings=emb[free], seed=seed)
        else:
            picks, _ = select_batch(
                strategy.removeprefix("typiclust+"),
                b,
                n=len(free),
                probs=pool_probs[free],
                embeddings=emb[free],
                labeled_embeddings=emb[labeled],
                pool_factor=pool_factor,
                seed=seed,
            )
        labeled[free[picks]] = True
        # One fit per round serves both the accuracy measurement and the next round's selection.
        test_probs, pool_probs = _fit_predict(x_pool[labeled], y_pool[labeled], [x_test, x_pool], k)
        curve[int(labeled.sum())] = float(np.mean(test_probs.argmax(axis=1) == y_test))
    return curve


def labels_to_reach(curve: dict[int, float], target: float) -> int | None:
    """The fewest labels at which the mean curve reaches `target`, or None if it never does."""
    for n in sorted(curve):
        if curve[n] >= target - 1e-9:
            return n
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", default=os.environ.get("QUICK") == "1")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    seeds = (0, 1) if args.quick else (0, 1, 2, 3, 4)
    strategies = ("random", "margin", "hybrid", "typiclust", "typiclust+hybrid") if args.quick else ALL_STRATEGIES
    datasets = [load_digits_data(), load_faces_data()]
    if not args.quick:
        datasets.append(load_sample_site_data(per_class=100))
    if args.quick:
        datasets[0].budgets = (100, 200)
    print(f"seeds={list(seeds)} strategies={list(strategies)} model=logistic-regression (quick={args.quick})")
    headline: list[tuple[str, int, int | None]] = []
    for data in datasets:
        max_labels = max(data.budgets)
        curves = {s: [run_curve(data, s, seed, max_labels) for seed in seeds] for s in strategies}
        mean = {s: {n: float(np.mean([c[n] for c in cs])) for n in cs[0]} for s, cs in curves.items()}
        print(f"\n## {data.name}: {len(data.y)} items, {int(data.y.max()) + 1} classes, batch {data.batch}")
        print("| labels | " + " | ".join(strategies) + " |")
        print("|---|" + "---|" * len(strategies))
        for n in data.budgets:
            print(f"| {n} | " + " | ".join(f"{mean[s].get(n, float('nan')):.3f}" for s in strategies) + " |")
        print(f"\nlabels each strategy needs to reach random's accuracy at budget B ({data.name}):")
        print("| B | random acc | " + " | ".join(s for s in strategies if s != "random") + " |")
        print("|---|---|" + "---|" * (len(strategies) - 1))
        for budget in data.budgets:
            target = mean["random"][budget]
            cells = []
            for s in strategies:
                if s == "random":
                    continue
                need = labels_to_reach(mean[s], target)
                cells.append("n/a" if need is None else f"{need} ({budget / need:.2f}x)")
                if s == DEFAULT:
                    headline.append((data.name, budget, need))
            print(f"| {budget} | {target:.3f} | " + " | ".join(cells) + " |")
    at_half = [(d, b, n) for d, b, n in headline if n is not None and n * 2 <= b]
    digits = [(b, n) for d, b, n in headline if d == "digits"]
    best_budget, best_need = max(digits, key=lambda bn: bn[0] / bn[1] if bn[1] else 0)
    ratio = best_budget / best_need if best_need else 0.0
    print(
        f"\n{DEFAULT} reaches random's accuracy with at most half the labels at {len(at_half)} of {len(headline)} "
        f"(dataset, budget) points: {[(d, b, n) for d, b, n in at_half]}"
    )
    print(f"elapsed {time.perf_counter() - started:.0f} s")
    print(
        f"bench label-efficiency: dataset=digits budget={best_budget} random_labels={best_budget} "
        f"{DEFAULT}_labels={best_need} budgets_at_half={len(at_half)}/{len(headline)} ratio={ratio:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

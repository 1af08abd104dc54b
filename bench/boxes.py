"""Box aggregation benchmark: fused boxes of simulated annotators vs one annotator's vs ensemble-boxes' WBF.

A generated set (numpy only): shapes (circle, square, triangle) on varied backgrounds (noise, gradients,
stripes), several per image, each true box the tight box of its drawn pixels. Simulated annotators with known
noise (corner jitter relative to the box size, missed boxes, extra boxes, wrong labels) each draw every image
they are given; three annotate each image. mAP@0.5 and mAP@[.5:.95] against the truth (training.box_evaluation,
equal to pycocotools' COCOeval in tests) of:
  - one annotator: the first annotator of each image, as a single-pass labeling would keep (boxes scored 1);
  - Flywheel: labeling.box_fusion.fuse_boxes of the three: all fused boxes, ranked by the share who drew
    the box with its label, for mAP; those of support >= MIN_SUPPORT (what a release keeps) for F1;
  - ensemble-boxes' weighted_boxes_fusion (Solovyev et al. 2021, MIT) on the same boxes, its defaults
    (iou_thr 0.55, conf_type avg), when it is installed (`make bench-boxes` installs it);
each fusion with equal annotator weights, agreement weights (each annotator's mean F1 with the others, what
fuse_annotations uses without gold) and gold weights (F1 on gold images all five annotators draw).
Run: `.venv/bin/python bench/boxes.py` (QUICK=1 for a small run). Closing line:
`bench boxes: ... ratio=<Flywheel's (agreement-weighted) mAP@[.5:.95] over the single annotator's>`.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from corpus.boxes import BoxSet, make_box_set
from labeling.box_fusion import annotator_weights, fuse_boxes, keep_supported, match_boxes
from labeling.box_quality import MATCH_IOU, MIN_SUPPORT, compute_annotator_agreement, compute_box_f1
from training.box_evaluation import compute_map

SIZE = 128
SHAPES = ("circle", "square", "triangle")
# name -> (corner jitter, sd as a share of the box's side; P(miss a box); mean extra boxes per image;
# P(wrong label)). A mixed crowd: one careful, three ordinary, one sloppy.
ANNOTATORS = {
    "careful": (0.03, 0.03, 0.05, 0.02),
    "ordinary-1": (0.06, 0.08, 0.15, 0.05),
    "ordinary-2": (0.06, 0.08, 0.15, 0.05),
    "ordinary-3": (0.08, 0.10, 0.20, 0.08),
    "sloppy": (0.12, 0.20, 0.40, 0.15),
}
OVERLAP = 3


def _background(rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    kind = int(rng.integers(3))
    if kind == 0:
        base = rng.integers(0, 256, size=(SIZE, SIZE, 3)).astype(np.float64)
    elif kind == 1:
        base = np.stack([xx, yy, 1 - xx], axis=-1) * rng.uniform(80, 255, size=3)
    else:
        stripes = (np.sin((xx * rng.uniform(4, 20) + yy * rng.uniform(-8, 8)) * np.pi) > 0)[..., None]
        base = np.where(stripes, rng.uniform(0, 255, size=3), rng.uniform(0, 255, size=3))
    return base


def _shape_mask(kind: str, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    if kind == "circle":
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
    if kind == "square":
        return (np.abs(xx - cx) <= r) & (np.abs(yy - cy) <= r)
    # An upright triangle: apex at the top, base at the bottom of the r-square.
    return (yy <= cy + r) & (np.abs(xx - cx) <= (yy - (cy - r)) / 2)


def generate_image(rng: np.random.Generator) -> tuple[np.ndarray, BoxSet]:
    """An RGB image (SIZE, SIZE, 3) with 2-6 shapes and their true boxes: the tight box of each shape's
    visible pixels (a later shape may cover part of an earlier one; a mostly covered one is not counted)."""
    image = _background(rng)
    owner = np.full((SIZE, SIZE), -1)
    kinds, drawn = [], []
    for i in range(int(rng.integers(2, 7))):
        kind = SHAPES[int(rng.integers(len(SHAPES)))]
        r = float(rng.uniform(6, 20))
        mask = _shape_mask(kind, float(rng.uniform(r, SIZE - r)), float(rng.uniform(r, SIZE - r)), r)
        image[mask] = rng.uniform(0, 255, size=3)
        owner[mask] = i
        kinds.append(kind)
        drawn.append(int(mask.sum()))
    boxes, labels = [], []
    for i, kind in enumerate(kinds):
        ys, xs = np.nonzero(owner == i)
        if len(xs) >= 0.5 * drawn[i]:
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            labels.append(kind)
    return image.astype(np.uint8), make_box_set(np.array(boxes, dtype=np.float64), labels)


def annotate(truth: BoxSet, noise: tuple[float, float, float, float], rng: np.random.Generator) -> BoxSet:
    """One simulated annotator's boxes of an image: each true box kept with P(1 - miss), its corners jittered
    by `jitter` x its side, its label swapped with P(wrong); plus Poisson(extra) boxes anywhere."""
    jitter, miss, extra, wrong = noise
    keep = rng.random(len(truth.xyxy)) >= miss
    boxes = truth.xyxy[keep].copy()
    sides = np.tile(boxes[:, 2:] - boxes[:, :2], 2)  # w, h, w, h: each corner moves relative to the box's size
    boxes = boxes + rng.normal(0.0, jitter, size=boxes.shape) * sides
    labels = [
        str(rng.choice([s for s in SHAPES if s != label])) if rng.random() < wrong else str(label)
        for label in truth.labels[keep]
    ]
    for _ in range(int(rng.poisson(extra))):
        x, y, side = rng.uniform(0, SIZE - 20), rng.uniform(0, SIZE - 20), rng.uniform(10, 35)
        boxes = np.vstack([boxes, [x, y, x + side, y + side]])
        labels.append(SHAPES[int(rng.integers(len(SHAPES)))])
    boxes = np.clip(boxes, 0, SIZE)
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    return make_box_set(boxes, labels)


def fuse_with_ensemble_boxes(sets: list[BoxSet], weights: np.ndarray | None = None) -> BoxSet:
    """ensemble-boxes' weighted_boxes_fusion with its defaults on the same boxes (normalised, as it wants)
    and the same annotator weights when given."""
    from ensemble_boxes import weighted_boxes_fusion

    index = {s: i for i, s in enumerate(SHAPES)}
    boxes, scores, labels = weighted_boxes_fusion(
        [np.clip(s.xyxy / SIZE, 0, 1).tolist() for s in sets],
        [s.scores.tolist() for s in sets],
        [[index[label] for label in s.labels] for s in sets],
        weights=None if weights is None else weights.tolist(),
    )
    return make_box_set(np.asarray(boxes).reshape(-1, 4) * SIZE, [SHAPES[int(k)] for k in labels], scores)


def _have_ensemble_boxes() -> bool:
    try:
        import ensemble_boxes  # noqa: F401
    except ImportError:
        return False
    return True


def _gold_weights(rng: np.random.Generator, n_gold: int) -> np.ndarray:
    """Each annotator's box F1 (same label, IoU >= 0.5) against the truth of `n_gold` gold images that every
    annotator draws, as a round's gold tasks measure it: the fusion weight labeling.box_fusion takes."""
    scores = {name: [] for name in ANNOTATORS}
    for _ in range(n_gold):
        _, true = generate_image(rng)
        for name, noise in ANNOTATORS.items():
            scores[name].append(compute_box_f1(annotate(true, noise, rng), true))
    return annotator_weights(list(ANNOTATORS), {name: float(np.mean(v)) for name, v in scores.items()})


def _micro_f1(found: list[BoxSet], truth: list[BoxSet]) -> float:
    """F1 of kept boxes (no ranking: a release's boxes) against the truth, same label at IoU >= 0.5."""
    matches = sum(len(match_boxes(f, t, MATCH_IOU, same_label=True)[0]) for f, t in zip(found, truth, strict=True))
    total = sum(len(f.xyxy) + len(t.xyxy) for f, t in zip(found, truth, strict=True))
    return 2.0 * matches / total


def _above(boxes: BoxSet, score: float) -> BoxSet:
    keep = boxes.scores >= score
    return BoxSet(boxes.xyxy[keep], boxes.labels[keep], boxes.scores[keep])


def run(n_images: int, seed: int) -> dict:
    """Per method: (the ranked boxes mAP is measured on, the kept boxes F1 is measured on); fusion seconds."""
    rng = np.random.default_rng(seed)
    names = list(ANNOTATORS)
    gold = _gold_weights(rng, max(5, n_images // 20))
    truth, drawn, chosen = [], [], []
    for _ in range(n_images):
        _, true = generate_image(rng)
        picked = [int(a) for a in rng.choice(len(names), OVERLAP, replace=False)]
        truth.append(true)
        chosen.append(np.array(picked))
        drawn.append([annotate(true, ANNOTATORS[names[a]], rng) for a in picked])
    # What fuse_annotations does without gold: each annotator's mean F1 with the others over the round.
    agreement = compute_annotator_agreement(
        [list(zip([names[a] for a in c], d, strict=True)) for c, d in zip(chosen, drawn, strict=True)]
    )
    agreed = annotator_weights(names, agreement["per_annotator"])
    schemes = {"": None, ", agreement-weighted": agreed, ", gold-weighted": gold}
    methods: dict[str, tuple[list[BoxSet], list[BoxSet]]] = {
        "one annotator": ([d[0] for d in drawn], [d[0] for d in drawn])
    }
    seconds = {"flywheel": 0.0, "ensemble-boxes": 0.0}
    peer_installed = _have_ensemble_boxes()
    for suffix, weights in schemes.items():
        ours, theirs = ([], []), ([], [])
        for sets, picked in zip(drawn, chosen, strict=True):
            w = None if weights is None else weights[picked]
            started = time.perf_counter()
            fused = fuse_boxes(sets, w)
            seconds["flywheel"] += time.perf_counter() - started
            ours[0].append(fused.boxes)
            ours[1].append(keep_supported(fused, MIN_SUPPORT).boxes)
            if peer_installed:
                started = time.perf_counter()
                peer = fuse_with_ensemble_boxes(sets, w)
                seconds["ensemble-boxes"] += time.perf_counter() - started
                # Its clusters are per label: a box at least half the annotators drew with that label is kept.
                theirs[0].append(peer)
                theirs[1].append(_above(peer, MIN_SUPPORT))
        methods["Flywheel WBF" + suffix] = ours
        if peer_installed:
            methods["ensemble-boxes WBF" + suffix] = theirs
    results = {
        method: {**compute_map(ranked, truth), "f1_kept": _micro_f1(kept, truth)}
        for method, (ranked, kept) in methods.items()
    }
    return {"results": results, "seconds": seconds, "fusions": len(schemes) * n_images}


def main() -> int:
    quick = os.environ.get("QUICK") == "1"
    n_images, seeds = (150, (0, 1)) if quick else (600, (0, 1, 2))
    print(f"{n_images} images of {SIZE}x{SIZE} px, {OVERLAP} of {len(ANNOTATORS)} annotators each, seeds {seeds}")
    print("annotators (jitter, miss, extra, wrong label):", ANNOTATORS)
    if not _have_ensemble_boxes():
        print("ensemble-boxes is not installed: its rows are left out (`make bench-boxes` installs it)")
    print(f"F1 kept: the boxes a release keeps (fused: support >= {MIN_SUPPORT}), same label at IoU >= {MATCH_IOU}")
    print("| seed | method | mAP@0.5 | mAP@[.5:.95] | F1 kept |")
    print("|---|---|---|---|---|")
    table: dict[str, dict[str, list[float]]] = {}
    timing = {"flywheel": 0.0, "ensemble-boxes": 0.0}
    for seed in seeds:
        out = run(n_images, seed)
        for method, result in out["results"].items():
            print(
                f"| {seed} | {method} | {result['map_50']:.3f} | {result['map_50_95']:.3f} | {result['f1_kept']:.3f} |"
            )
            for key in ("map_50", "map_50_95", "f1_kept"):
                table.setdefault(method, {}).setdefault(key, []).append(result[key])
        timing = {k: timing[k] + v for k, v in out["seconds"].items()}
    mean = {method: {k: float(np.mean(v)) for k, v in values.items()} for method, values in table.items()}
    for method, values in mean.items():
        print(f"| mean | {method} | {values['map_50']:.3f} | {values['map_50_95']:.3f} | {values['f1_kept']:.3f} |")
    ms = {k: 1e3 * v / (out["fusions"] * len(seeds)) for k, v in timing.items()}
    print(f"fusion time per image: Flywheel {ms['flywheel']:.2f} ms, ensemble-boxes {ms['ensemble-boxes']:.2f} ms")
    # The product's default without gold (fuse_annotations) beside the peer's default (equal weights).
    ours, one = mean["Flywheel WBF, agreement-weighted"], mean["one annotator"]
    peer = mean.get("ensemble-boxes WBF")
    peer_text = ""
    if peer:
        peer_text = f" ensemble_boxes_map={peer['map_50_95']:.3f}"
        peer_text += f" ratio_vs_ensemble_boxes={ours['map_50_95'] / peer['map_50_95']:.2f}"
    print(
        f"bench boxes: flywheel_map={ours['map_50_95']:.3f} flywheel_map50={ours['map_50']:.3f} "
        f"single_annotator_map={one['map_50_95']:.3f}{peer_text} ratio={ours['map_50_95'] / one['map_50_95']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

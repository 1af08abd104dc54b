"""Augmentation recipes: named albumentations pipelines shared by training and prediction."""

from __future__ import annotations

from collections.abc import Callable

import albumentations as A

# ImageNet statistics: the usual default (torchvision, timm); fine for small CNNs trained from scratch.
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def _train_basic(size: int, seed: int | None) -> A.Compose:
    return A.Compose(
        [
            # scale=(0.6, 1.0): a milder crop than torchvision's (0.08, 1.0), since small web images
            # often fill the frame with their subject and a tiny crop would lose the class.
            A.RandomResizedCrop(size=(size, size), scale=(0.6, 1.0)),
            A.HorizontalFlip(p=0.5),
            # Small jitter (0.1-0.2) as in albumentations' own classification examples.
            A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5),
            A.Normalize(mean=_MEAN, std=_STD),
        ],
        seed=seed,
    )


def _eval(size: int, seed: int | None) -> A.Compose:
    return A.Compose([A.Resize(height=size, width=size), A.Normalize(mean=_MEAN, std=_STD)], seed=seed)


RECIPES: dict[str, Callable[[int, int | None], A.Compose]] = {"train-basic": _train_basic, "eval": _eval}


def get_recipe(name: str, size: int, seed: int | None = None) -> A.Compose:
    """The albumentations pipeline `name` producing `size`x`size` normalised float images (HWC).

    `seed` makes the random draws repeatable (albumentations 2.x keeps its own generator).
    """
    if name not in RECIPES:
        raise ValueError(f"unknown augmentation recipe {name!r}; recipes: {sorted(RECIPES)}")
    if size < 8:
        raise ValueError(f"image size must be at least 8 pixels, got {size}")
    return RECIPES[name](size, seed)

"""Augmentation recipes as data: the named albumentations entries a release records and AugmentationRecipe."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, model_validator

# ImageNet statistics: the usual default (torchvision, timm); fine for small CNNs trained from scratch.
_NORMALIZE = {"__class_fullname__": "Normalize", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "p": 1.0}

# Named augmentation recipes, as data: albumentations 2.x transform entries ({"__class_fullname__": name, **params},
# the format of `A.to_dict`). training.augment builds them; it fills "size" or "height"/"width" with the
# trainer's image size, so one recipe serves any input size. corpus never imports albumentations.
AUGMENTATION_RECIPES: dict[str, list[dict[str, Any]]] = {
    "train-basic": [
        # scale=(0.6, 1.0): milder than torchvision's (0.08, 1.0), since small web images often fill the
        # frame with their subject and a tiny crop would lose the class.
        {"__class_fullname__": "RandomResizedCrop", "scale": [0.6, 1.0], "p": 1.0},
        {"__class_fullname__": "HorizontalFlip", "p": 0.5},
        # Small jitter (0.1-0.2) as in albumentations' own classification examples.
        {
            "__class_fullname__": "ColorJitter",
            "brightness": 0.2,
            "contrast": 0.2,
            "saturation": 0.2,
            "hue": 0.02,
            "p": 0.5,
        },
        _NORMALIZE,
    ],
    # Geometry-only: for classes told apart by colour, where jitter would blur the boundary.
    "train-light": [
        {"__class_fullname__": "Resize", "p": 1.0},
        {"__class_fullname__": "HorizontalFlip", "p": 0.5},
        _NORMALIZE,
    ],
    "eval": [{"__class_fullname__": "Resize", "p": 1.0}, _NORMALIZE],
}


class AugmentationRecipe(BaseModel):
    """The augmentation a release is meant to be trained with: a named recipe stored as data.

    `transforms` (training) and `eval_transforms` (val, test, prediction) are albumentations transform
    entries; left empty they are filled from AUGMENTATION_RECIPES[name] (and ["eval"]), so the manifest
    always holds the full recipe and a later change of the named defaults cannot change an old release.
    """

    name: str = Field("train-basic", description="Recipe name (train-basic, train-light, or your own).")
    transforms: list[dict[str, Any]] = Field(default_factory=list, description="Training transforms, in order.")
    eval_transforms: list[dict[str, Any]] = Field(default_factory=list, description="Val/test/prediction transforms.")

    @model_validator(mode="after")
    def _fill_named(self) -> AugmentationRecipe:
        if not self.transforms:
            if self.name not in AUGMENTATION_RECIPES:
                raise ValueError(
                    f"unknown recipe {self.name!r} and no transforms given; recipes: {sorted(AUGMENTATION_RECIPES)}"
                )
            self.transforms = [dict(t) for t in AUGMENTATION_RECIPES[self.name]]
        if not self.eval_transforms:
            self.eval_transforms = [dict(t) for t in AUGMENTATION_RECIPES["eval"]]
        for entry in [*self.transforms, *self.eval_transforms]:
            if not isinstance(entry.get("__class_fullname__"), str):
                raise ValueError(f"each transform needs a '__class_fullname__' string, got {entry}")
        return self

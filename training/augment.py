"""Augmentation recipes: albumentations pipelines built from the recipe data a release records."""

from __future__ import annotations

import inspect
import posixpath
from typing import Any

import albumentations as A
import cv2
import numpy as np
import pyarrow as pa

from corpus.releases.recipes import AUGMENTATION_RECIPES, AugmentationRecipe
from corpus.releases.versions import load_release
from corpus.store import DataRoot


def build_transforms(entries: list[dict[str, Any]], size: int, seed: int | None = None) -> A.Compose:
    """An albumentations Compose from transform entries ({"__class_fullname__": name, **params}).

    A transform taking `size` (e.g. RandomResizedCrop) or `height`/`width` (e.g. Resize) that the entry
    leaves out gets `size`x`size`; `p` left out keeps the transform's own default (unlike A.from_dict,
    which silently uses 0.5); an unknown parameter is an error. `seed` makes the random draws repeatable.
    """
    if size < 8:
        raise ValueError(f"image size must be at least 8 pixels, got {size}")
    transforms = []
    for entry in entries:
        name = entry.get("__class_fullname__", "")
        cls = getattr(A, name.rsplit(".", 1)[-1], None)
        if not (inspect.isclass(cls) and issubclass(cls, A.BasicTransform)):
            raise ValueError(f"{name!r} is not an albumentations transform")
        params = {k: tuple(v) if isinstance(v, list) else v for k, v in entry.items() if k != "__class_fullname__"}
        accepted = inspect.signature(cls).parameters
        # albumentations only warns about unknown arguments; a typo in a recipe must not pass silently.
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            raise ValueError(f"cannot build {name}: unknown parameters {unknown}")
        if "size" in accepted and "size" not in params:
            params["size"] = (size, size)
        if "height" in accepted and "width" in accepted and "height" not in params and "width" not in params:
            params["height"] = params["width"] = size
        try:
            transforms.append(cls(**params))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"cannot build {name} with {params}: {exc}") from exc
    return A.Compose(transforms, seed=seed)


def get_recipe(name: str, size: int, seed: int | None = None) -> A.Compose:
    """The named recipe `name` (recipes.AUGMENTATION_RECIPES) producing `size`x`size` float images (HWC)."""
    if name not in AUGMENTATION_RECIPES:
        raise ValueError(f"unknown augmentation recipe {name!r}; recipes: {sorted(AUGMENTATION_RECIPES)}")
    return build_transforms(AUGMENTATION_RECIPES[name], size, seed)


def build_recipe(recipe: AugmentationRecipe, size: int, seed: int | None = None) -> tuple[A.Compose, A.Compose]:
    """(train, eval) pipelines of a release's recipe."""
    return build_transforms(recipe.transforms, size, seed), build_transforms(recipe.eval_transforms, size)


def serialize(transform: A.Compose) -> dict[str, Any]:
    """albumentations' own serialisation of a built pipeline (A.to_dict), for the model's metadata."""
    return A.to_dict(transform)


def materialize_augmented(
    root: DataRoot, dataset: str, version: str = "latest", copies: int = 2, *, image_size: int = 64, seed: int = 0
) -> dict[str, Any]:
    """Write `copies` augmented copies of a release's train split as PNG images, for tools that want files.

    Uses the release's recipe without its Normalize step (files hold uint8 pixels). Writes
    augmented/<dataset>/<version>/<recipe>-x<copies>-s<seed>/train.parquet (record_id, copy, label,
    image, width, height) and returns {"path" (relative to the root), "rows", "recipe"}. Same inputs,
    same bytes.
    """
    if copies < 1:
        raise ValueError(f"copies must be >= 1, got {copies}")
    release = load_release(root, dataset, version)
    recipe = release.augmentation
    entries = [t for t in recipe.transforms if t["__class_fullname__"] != "Normalize"]
    transform = build_transforms(entries, image_size, seed)
    train = release.train
    ids = train.column("record_id").to_pylist()
    labels = train.column("label").to_pylist()
    out: dict[str, list] = {"record_id": [], "copy": [], "label": [], "image": [], "width": [], "height": []}
    from training.data import decode_image  # data imports torch; keep this module light for recipe checks

    for copy in range(copies):
        transform.set_random_seed(seed * 1_000_003 + copy)
        for rid, label, data in zip(ids, labels, train.column("image").to_pylist(), strict=True):
            image = transform(image=decode_image(data, rid))["image"]
            ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
            if not ok:
                raise ValueError(f"record {rid}: augmented copy {copy} could not be encoded")
            out["record_id"].append(rid)
            out["copy"].append(copy)
            out["label"].append(label)
            out["image"].append(buf.tobytes())
            out["height"].append(int(image.shape[0]))
            out["width"].append(int(image.shape[1]))
    table = pa.table(
        out,
        schema=pa.schema(
            [
                ("record_id", pa.string()),
                ("copy", pa.int32()),
                ("label", pa.string()),
                ("image", pa.binary()),
                ("width", pa.int32()),
                ("height", pa.int32()),
            ],
            metadata={
                b"flywheel.release": f"{dataset}/{release.version}".encode(),
                b"flywheel.recipe": recipe.name.encode(),
            },
        ),
    )
    folder = posixpath.join("augmented", dataset, release.version, f"{recipe.name}-x{copies}-s{seed}")
    relpath = posixpath.join(folder, "train.parquet")
    root.write_table(relpath, table)
    return {"path": relpath, "rows": table.num_rows, "recipe": recipe.name}

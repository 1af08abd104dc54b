"""Imports of labeling tools' exports: Label Studio JSON (choices and RectangleLabels), COCO files and YOLO
folders, each image with its label and its boxes as rows of corpus.boxes.BOX_TYPE.

A malformed annotation (a box out of the image, an unknown category, a YOLO line of 4 numbers, a negative size)
refuses its image as a drop with reason `bad_box` and one line naming the file and the annotation; every other
image of the export is imported as it is.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from PIL import Image, UnidentifiedImageError

from corpus.box_formats import STUDIO_RESULT_TYPE, boxes_from_coco, boxes_from_studio_result, boxes_from_yolo
from crawlers.importers.formats import Items, item_for, resolve_reference
from crawlers.importers.items import ImportSourceError, SourceItem, is_image_name
from crawlers.importers.label_sets import LabelSetError, parse_label_set

BAD_BOX = "bad_box"
YOLO_CLASS_FILES = ("data.yaml", "dataset.yaml", "classes.txt")


def load_json(path: Path) -> Any:
    try:
        with path.open("rb") as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        raise ImportSourceError(f"{path}: cannot read as JSON: {exc}") from exc


def read_image_size(locator: str) -> tuple[int, int] | None:
    """(width, height) of a local image from its header (PIL reads no pixels), None if it cannot be read."""
    if "://" in locator:
        return None
    try:
        with Image.open(locator) as image:
            return image.size
    except (OSError, UnidentifiedImageError, ValueError):
        return None


def _majority(boxes: list[dict[str, Any]]) -> str | None:
    votes = Counter(b["label"] for b in boxes)
    return votes.most_common(1)[0][0] if votes else None


def _refused(locator: str, detail: str, **extra: Any) -> SourceItem:
    return SourceItem(locator, refused=BAD_BOX, refused_detail=" ".join(detail.split()), **extra)


def ls_task_choice(task: dict[str, Any]) -> str | None:
    """The label of a Label Studio task: the most chosen class over its live annotations (first on a tie)."""
    votes: Counter[str] = Counter()
    for annotation in task.get("annotations") or []:
        if annotation.get("was_cancelled"):
            continue
        for region in annotation.get("result") or []:
            choices = (region.get("value") or {}).get("choices") or []
            if region.get("type") == "choices" and choices:
                votes[str(choices[0])] += 1
                break
    return votes.most_common(1)[0][0] if votes else None


def _task_choices(task: dict[str, Any]) -> Iterator[list[Any] | None]:
    """Each live annotation's choices (of its first choices result; None when it has none)."""
    for annotation in task.get("annotations") or []:
        if annotation.get("was_cancelled"):
            continue
        regions = [r for r in annotation.get("result") or [] if r.get("type") == "choices"]
        yield list((regions[0].get("value") or {}).get("choices") or []) if regions else None


def is_multi_choice_export(doc: list[Any]) -> bool:
    """True when some annotation of the export chose several classes in one Choices result: the export is of
    label sets (Label Studio's export holds no labeling config to say so; one that never chose two reads as
    single-label)."""
    return any(len(chosen or []) > 1 for task in doc if isinstance(task, dict) for chosen in _task_choices(task))


def ls_task_label_set(task: dict[str, Any]) -> list[str] | None:
    """The label set of a multi-choice task: the labels more than half of its live annotations chose (an
    annotation with no choices chose none: "none of these"); None without a live annotation. LabelSetError
    names what is wrong with an annotation's choices."""
    answers = [parse_label_set([] if chosen is None else chosen) or [] for chosen in _task_choices(task)]
    if not answers:
        return None
    votes = Counter(name for chosen in answers for name in chosen)
    return sorted(name for name, n in votes.items() if 2 * n > len(answers))


def ls_task_boxes(task: dict[str, Any]) -> tuple[list[dict[str, Any]], int, int, Any] | None:
    """(boxes, width, height, annotation id) of the first live annotation of a task holding RectangleLabels
    results, None if none holds any. ValueError names the annotation and the result."""
    for annotation in task.get("annotations") or []:
        result = annotation.get("result") or []
        if annotation.get("was_cancelled") or not any(r.get("type") == STUDIO_RESULT_TYPE for r in result):
            continue
        try:
            boxes, width, height = boxes_from_studio_result(result)
        except ValueError as exc:
            raise ValueError(f"annotation {annotation.get('id', '?')}: {exc}") from None
        return boxes, width, height, annotation.get("id")
    return None


def _studio_item(path: Path, media_root: Path, task: dict[str, Any], sets: bool) -> SourceItem:
    data = task.get("data") or {}
    ref = data.get("image") or next((v for v in data.values() if isinstance(v, str)), None)
    if not ref:
        return SourceItem(f"{path}#task-{task.get('id')}", refused="no_image_in_task")
    meta = {"ls_task_id": task.get("id"), **{k: v for k, v in data.items() if k != "image"}}
    locator = resolve_reference(ref, media_root)
    try:
        found = ls_task_boxes(task)
    except ValueError as exc:
        return _refused(locator, f"{path}: task {task.get('id')}, {exc}", metadata=meta)
    if found is None and sets:
        return item_for(locator, label_set=ls_task_label_set(task), metadata=meta)  # checked on open
    if found is None:
        return item_for(locator, label=ls_task_choice(task), metadata=meta)
    boxes, width, height, annotation = found
    meta["ls_annotation_id"] = annotation
    label = ls_task_choice(task) or _majority(boxes)
    return item_for(locator, label=label, metadata=meta, boxes=boxes, image_size=(width, height))


def open_label_studio_export(path: Path, media_root: Path) -> Items:
    """A Label Studio JSON export: each task's image (data.image, or its first string value), its label (the
    majority choice, else its boxes' majority label; in a multi-choice export its set: ls_task_label_set) and
    the RectangleLabels boxes of its first live annotation that has any (original_width/height give the size)."""
    doc = load_json(path)
    if not isinstance(doc, list):
        raise ImportSourceError(f"{path}: a Label Studio JSON export is a list of tasks")
    sets = is_multi_choice_export(doc)
    for task in doc if sets else []:
        try:
            ls_task_label_set(task) if isinstance(task, dict) else None
        except LabelSetError as exc:
            raise ImportSourceError(f"{path}: task {task.get('id')}: {exc}") from None

    def items() -> Iterator[SourceItem]:
        for task in doc:
            yield _studio_item(path, media_root, task, sets)

    return items


def _coco_locator(name: str, media_root: Path, path: Path) -> str:
    """Where an image of a COCO file is: under media_root, its images/ folder, or (the COCO 2017 layout,
    annotations/instances_<split>.json beside <split>/, which Flywheel's coco export writes) ../<split>/."""
    locator = resolve_reference(name, media_root)
    if "://" in locator or os.path.exists(locator):
        return locator
    split = path.stem.removeprefix("instances_") if path.stem.startswith("instances_") else None
    for candidate in (media_root / "images" / name, *([path.parent.parent / split / name] if split else [])):
        if os.path.exists(candidate):
            return str(candidate)
    return locator


def _coco_item(path: Path, media_root: Path, image: dict[str, Any], anns: list, names: dict) -> SourceItem:
    file_name = str(image.get("file_name") or "")
    locator = _coco_locator(file_name, media_root, path)
    meta: dict[str, Any] = {"coco_image_id": image.get("id")}
    crowd = [a.get("id") for a in anns if a.get("iscrowd")]
    if crowd:  # a crowd region covers many objects at once: no box of one object, so kept aside, by id
        meta["coco_crowd_annotations"] = crowd
        anns = [a for a in anns if not a.get("iscrowd")]
    declared = (image.get("width"), image.get("height"))
    size = tuple(int(v) for v in declared) if all(isinstance(v, int) and v > 0 for v in declared) else None
    size = size or read_image_size(locator)
    if size is None:
        if not anns:
            return item_for(locator, metadata=meta, boxes=[])
        return _refused(locator, f"{path}: image {image.get('id')} ({file_name}): no width/height and unreadable")
    try:
        boxes = boxes_from_coco(anns, names, *size)
    except ValueError as exc:
        return _refused(locator, f"{path}: image {image.get('id')} ({file_name}), {exc}", metadata=meta)
    return item_for(locator, label=_majority(boxes), metadata=meta, boxes=boxes, image_size=size)


def open_coco(path: Path, media_root: Path) -> Items:
    """A COCO file: each image with its boxes (bbox [x, y, w, h] in pixels, checked against the image's width
    and height, read from the file where the COCO file has none) and, as its label, the category most of its
    boxes have. Files are found under `media_root`, its images/ folder or ../<split>/ (see _coco_locator).
    Crowd annotations (iscrowd 1) are no boxes; their ids are kept in the record's metadata. An annotation of
    an image the file does not list is a drop naming it."""
    doc = load_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise ImportSourceError(f"{path}: a COCO file is an object with an 'images' list")
    names = {c["id"]: str(c["name"]) for c in doc.get("categories") or [] if isinstance(c, dict) and "id" in c}
    per_image: dict[Any, list[dict[str, Any]]] = {}
    for ann in doc.get("annotations") or []:
        per_image.setdefault(ann.get("image_id"), []).append(ann)
    listed = {image.get("id") for image in doc["images"]}

    def items() -> Iterator[SourceItem]:
        for image in doc["images"]:
            yield _coco_item(path, media_root, image, per_image.get(image.get("id"), []), names)
        for image_id in sorted(set(per_image) - listed, key=str):
            first = per_image[image_id][0].get("id")
            yield _refused(f"{path}#annotation-{first}", f"{path}: annotation {first}: unknown image_id {image_id!r}")

    return items


def yolo_class_names(folder: Path) -> list[str]:
    """Class index -> name of a YOLO folder: data.yaml's (or dataset.yaml's) `names` (a list or an index map),
    else classes.txt, one name a line. ImportSourceError names the file when none is found or readable."""
    for candidate in YOLO_CLASS_FILES:
        file = folder / candidate
        if not file.is_file():
            continue
        if candidate == "classes.txt":
            return [line.strip() for line in file.read_text().splitlines() if line.strip()]
        try:
            names = (yaml.safe_load(file.read_text()) or {}).get("names")
        except (yaml.YAMLError, AttributeError) as exc:
            raise ImportSourceError(f"{file}: cannot read as YOLO data YAML: {exc}") from exc
        if isinstance(names, dict) and sorted(names) == list(range(len(names))):
            return [str(names[i]) for i in range(len(names))]
        if isinstance(names, list):
            return [str(n) for n in names]
        raise ImportSourceError(f"{file}: 'names' must be a list or a map 0..n-1 -> name, got {names!r}")
    raise ImportSourceError(f"{folder}: a YOLO folder needs data.yaml or classes.txt with the class names")


def is_yolo_folder(path: Path) -> bool:
    """images/ and labels/ folders beside a data.yaml, dataset.yaml or classes.txt."""
    has_names = any((path / n).is_file() for n in YOLO_CLASS_FILES)
    return has_names and (path / "images").is_dir() and (path / "labels").is_dir()


def yolo_label_file(image: Path, folder: Path) -> Path:
    """Where YOLO keeps an image's labels: the last images/ of its path replaced by labels/, extension .txt."""
    rel = image.relative_to(folder).parts
    last = len(rel) - 1 - rel[::-1].index("images")
    return folder.joinpath(*rel[:last], "labels", *rel[last + 1 :]).with_suffix(".txt")


def _yolo_item(folder: Path, image: Path, names: list[str]) -> SourceItem:
    label_file = yolo_label_file(image, folder)
    meta = {"yolo_labels": str(label_file.relative_to(folder))}
    text = label_file.read_text() if label_file.is_file() else ""  # no label file: an image without objects
    size = read_image_size(str(image))
    if size is None:
        return item_for(str(image), metadata=meta, boxes=[])  # the importer drops what cannot be decoded
    try:
        boxes = boxes_from_yolo(text, names, *size)
    except ValueError as exc:
        return _refused(str(image), f"{label_file}: {exc}", metadata=meta)
    return item_for(str(image), label=_majority(boxes), metadata=meta, boxes=boxes, image_size=size)


def open_yolo(path: Path, media_root: Path) -> Items:
    """A YOLO folder: every image under images/ (any split folders below it), its boxes from the .txt of the
    same name under labels/ (`class cx cy w h`, normalised; converted with the image's own size), class names
    from data.yaml or classes.txt. The label is the class most of its boxes have."""
    del media_root  # a YOLO folder's paths are its own
    if not path.is_dir() or not (path / "images").is_dir():
        raise ImportSourceError(f"{path}: a YOLO folder holds images/ and labels/")
    names = yolo_class_names(path)

    def items() -> Iterator[SourceItem]:
        # os.walk lists one folder at a time: a split folder of 10^6 images is never held as paths twice
        for folder, dirs, files in os.walk(path / "images"):
            dirs.sort()
            for name in sorted(files):
                if name.startswith("."):
                    continue
                image = Path(folder) / name
                yield (
                    _yolo_item(path, image, names) if is_image_name(name) else SourceItem(str(image), skip="not_image")
                )

    return items

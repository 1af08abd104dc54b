"""The label task types Flywheel runs end to end, and which record column holds each one's answer."""

from __future__ import annotations

from typing import Any, Literal

TaskType = Literal["classify", "multilabel", "detect", "text"]
TASK_TYPES: tuple[str, ...] = ("classify", "multilabel", "detect", "text")
DEFAULT_TASK = "classify"

# The record column a released answer lives in: one class (`label`), a set of classes (`labels`), boxes.
ANSWER_COLUMN = {"classify": "label", "multilabel": "labels", "detect": "boxes", "text": "label"}
# The record kind each task type labels.
RECORD_KIND = {"classify": "image", "multilabel": "image", "detect": "image", "text": "text"}


def check_task(task: str) -> str:
    """`task` if it is a known task type, else ValueError naming the known ones."""
    if task not in TASK_TYPES:
        raise ValueError(f"unknown task type {task!r}: expected one of {', '.join(TASK_TYPES)}")
    return task


def task_of(manifest_or_round: dict[str, Any]) -> str:
    """The task type a release manifest or a round's dict records; `classify` for those written before types."""
    return check_task(manifest_or_round.get("task") or DEFAULT_TASK)

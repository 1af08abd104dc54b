"""Simulated annotators for demos and benchmarks: they read ground truth (the pipeline never does) and err."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from labeling.client import LabelStudioClient

# Seconds a simulated annotator spends per image: uniform over a range typical of single-choice image
# classification (Label Studio lead times of 2-10 s were seen in the feasibility runs); only cosmetic.
LEAD_TIME_RANGE_S = (2.0, 10.0)
EMAIL_DOMAIN = "annotators.flywheel.local"


@dataclass
class SimulatedAnnotator:
    """A Label Studio user who gives the true label with probability 1 - error_rate, else a random other one."""

    username: str
    error_rate: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error_rate must be in [0, 1]; got {self.error_rate}")
        if not self.username:
            raise ValueError("username must not be empty")

    @property
    def email(self) -> str:
        return f"{self.username}@{EMAIL_DOMAIN}"


def _task_rng(seed: int, task_id: int) -> np.random.Generator:
    # One generator per task, so a rerun (or a different task order) makes the same choices per task.
    digest = hashlib.sha256(f"{seed}:{task_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def simulate_labeling(
    client: LabelStudioClient,
    project_id: int,
    tasks: list[dict],
    truth: Callable[[dict], str | None],
    labels: list[str],
    annotators: list[SimulatedAnnotator],
    *,
    overlap_fraction: float = 0.3,
    overlap_k: int = 2,
    seed: int = 0,
    from_name: str = "label",
    to_name: str = "image",
) -> dict:
    """Annotate `tasks` ({"id", "data"}) in Label Studio as the simulated `annotators`.

    Each task goes to one annotator; a seeded `overlap_fraction` of them goes to `overlap_k` distinct
    annotators, for agreement measurement. Tasks whose truth is None get no annotation. An annotator
    who already annotated a task (seen in Label Studio) is not asked again, so reruns add nothing.
    Returns {"annotations": created, "tasks": tasks annotated now, "per_annotator": {username: created}}.
    """
    if not annotators:
        raise ValueError("annotators must not be empty")
    if len({a.username for a in annotators}) != len(annotators):
        raise ValueError("annotator usernames must be unique")
    if not 0.0 <= overlap_fraction <= 1.0:
        raise ValueError(f"overlap_fraction must be in [0, 1]; got {overlap_fraction}")
    if not 1 <= overlap_k <= len(annotators):
        raise ValueError(f"overlap_k must be in [1, {len(annotators)}]; got {overlap_k}")
    if len(labels) < 2:
        raise ValueError("labels needs at least 2 classes")

    user_ids = {a.username: client.ensure_user(a.username, a.email) for a in annotators}
    done: set[tuple[int, int]] = set()
    for task in client.list_annotated_tasks(project_id):
        for annotation in task["annotations"]:
            if annotation["completed_by"] is not None:
                done.add((int(task["id"]), int(annotation["completed_by"])))

    per_annotator = {a.username: 0 for a in annotators}
    n_tasks = n_annotations = 0
    for task in tasks:
        task_id = int(task["id"])
        true_label = truth(task["data"])
        if true_label is None:
            continue
        if true_label not in labels:
            raise ValueError(f"task {task_id}: true label {true_label!r} is not one of {labels}")
        rng = _task_rng(seed, task_id)
        k = overlap_k if rng.random() < overlap_fraction else 1
        chosen = rng.choice(len(annotators), size=k, replace=False)
        created_here = 0
        for index in chosen:
            annotator = annotators[int(index)]
            user_id = user_ids[annotator.username]
            # Draw before the skip check, so the answers do not depend on what was done before.
            wrong = rng.random() < annotator.error_rate
            others = [label for label in labels if label != true_label]
            answer = others[int(rng.integers(len(others)))] if wrong else true_label
            lead_time = float(rng.uniform(*LEAD_TIME_RANGE_S))
            if (task_id, user_id) in done:
                continue
            result = [{"from_name": from_name, "to_name": to_name, "type": "choices", "value": {"choices": [answer]}}]
            client.create_annotation(task_id, user_id, result, lead_time)
            done.add((task_id, user_id))
            per_annotator[annotator.username] += 1
            created_here += 1
        n_annotations += created_here
        n_tasks += created_here > 0
    return {"annotations": n_annotations, "tasks": n_tasks, "per_annotator": per_annotator}

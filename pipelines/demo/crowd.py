"""The demo's simulated crowd: annotators who label whatever round is open, at their own pace, like people do."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable

import numpy as np

from corpus.store import DataRoot
from labeling.client import LabelStudioClient
from labeling.round_store import load_open_round
from pipelines.demo.annotators import LEAD_TIME_RANGE_S, SimulatedAnnotator
from pipelines.demo.box_annotators import box_noise_for, box_result, draw_noisy_boxes

# record_id -> (its true boxes, (width, height)), or None where the image has no truth.
BoxTruth = Callable[[str], tuple[list[dict], tuple[int, int]] | None]

log = logging.getLogger(__name__)


def _rng(*parts: object) -> np.random.Generator:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def next_task_for(
    annotator: str, tasks: list[tuple[str, int]], planned: dict[str, int], done: dict[int, set[str]]
) -> tuple[str, int] | None:
    """What the labeling queue serves `annotator` next: the first task (in priority order) they have not
    answered that still lacks annotations (`planned` per record; records missing from it need everyone)."""
    for record_id, task_id in tasks:
        answered = done.get(task_id, set())
        if annotator in answered:
            continue
        if record_id in planned and len(answered) >= planned[record_id]:
            continue
        return record_id, task_id
    return None


def answer_label_set(truth: list[str], labels: list[str], error_rate: float, rng: np.random.Generator) -> list[str]:
    """A simulated multiple-choice answer: the true set, except that with probability `error_rate` one label
    (drawn uniformly from `labels`) is flipped: a class present is missed, or one absent is added. So an
    annotator's error rate means what it does for one label per image (one item in `error_rate` answered
    wrong), and the noise falls on each label alike (error_rate / K per label)."""
    answer = set(truth)
    if rng.random() < error_rate:
        answer ^= {labels[int(rng.integers(len(labels)))]}
    return [label for label in labels if label in answer]


class SimulatedCrowd:
    """Simulated annotators answering the open round of `dataset` from ground truth, in a background thread
    (their Choices answer the config's `to_name` object: the image, or a text round's text).

    They take tasks the way Label Studio's queue serves them (each task until it has its planned overlap,
    gold tasks to everyone, nobody twice) and wait `pace_s` between answers, so the round fills over time
    and closes on its completion event like a round labeled by people. With `box_truth` (a detect round) they
    draw boxes instead, with the noise box_noise_for(error_rate) gives each.
    """

    def __init__(
        self,
        client: LabelStudioClient,
        root: DataRoot,
        dataset: str,
        truth: Callable[[str], str | None],
        labels: list[str],
        annotators: list[SimulatedAnnotator],
        *,
        pace_s: float = 0.05,
        seed: int = 0,
        box_truth: BoxTruth | None = None,
        multiple: bool = False,
        to_name: str = "image",
    ) -> None:
        self.client, self.root, self.dataset, self.truth, self.labels = client, root, dataset, truth, labels
        self.box_truth = box_truth
        self.annotators, self.pace_s, self.seed, self.to_name = annotators, pace_s, seed, to_name
        self.multiple = multiple  # truth is a label set, answered as a multiple choice (answer_label_set)
        self.answered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="simulated-crowd", daemon=True)
        self._user_ids: dict[str, int] = {}
        self._done: dict[int, set[str]] = {}

    def __enter__(self) -> SimulatedCrowd:
        self._user_ids = {a.username: self.client.ensure_user(a.username, a.email) for a in self.annotators}
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self._answer_one_each():
                    self._stop.wait(1.0)
            except Exception:  # a restart or a slow server: people wait and try again
                log.exception("simulated annotators: a call failed; trying again")
                self._stop.wait(2.0)

    def _answer_one_each(self) -> bool:
        round_ = load_open_round(self.root, self.dataset)
        if round_ is None or round_.status != "labeling":
            return False
        tasks = [(rid, round_.tasks[rid]) for rid in round_.record_ids]
        worked = False
        for annotator in self.annotators:
            picked = next_task_for(annotator.username, tasks, round_.overlap, self._done)
            if picked is None or self._stop.is_set():
                continue
            self._answer(annotator, *picked)
            worked = True
            self._stop.wait(self.pace_s)
        return worked

    def _answer(self, annotator: SimulatedAnnotator, record_id: str, task_id: int) -> None:
        self._done.setdefault(task_id, set()).add(annotator.username)
        true_label = self.truth(record_id)
        user_id = self._user_ids[annotator.username]
        rng = _rng(self.seed, annotator.username, task_id)
        if self.box_truth is not None:
            self._draw(annotator, record_id, task_id, rng)
            return
        if true_label is None:  # nothing to tell from this image: skipped, as people skip what they can't tell
            self.client.create_annotation(task_id, user_id, [], rng.uniform(*LEAD_TIME_RANGE_S), skipped=True)
            return
        if self.multiple:
            answer = answer_label_set(true_label, self.labels, annotator.error_rate, rng)
        else:
            others = [label for label in self.labels if label != true_label]
            answer = [others[int(rng.integers(len(others)))] if rng.random() < annotator.error_rate else true_label]
        result = [{"from_name": "label", "to_name": self.to_name, "type": "choices", "value": {"choices": answer}}]
        self.client.create_annotation(task_id, user_id, result, rng.uniform(*LEAD_TIME_RANGE_S))
        self.answered += 1

    def _draw(self, annotator: SimulatedAnnotator, record_id: str, task_id: int, rng: np.random.Generator) -> None:
        known = self.box_truth(record_id)
        user_id = self._user_ids[annotator.username]
        if known is None:
            self.client.create_annotation(task_id, user_id, [], rng.uniform(*LEAD_TIME_RANGE_S), skipped=True)
            return
        boxes, size = known
        drawn = draw_noisy_boxes(boxes, box_noise_for(annotator.error_rate), self.labels, size, rng)
        self.client.create_annotation(task_id, user_id, box_result(drawn, size), rng.uniform(*LEAD_TIME_RANGE_S))
        self.answered += 1

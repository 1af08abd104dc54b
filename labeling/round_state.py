"""A label round's life as pure state updates: opened -> labeling -> closing -> closed -> released."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from corpus.tasks import check_task
from labeling.quality import latest_versions

OPENED, LABELING, CLOSING, CLOSED, RELEASED = "opened", "labeling", "closing", "closed", "released"
STATUSES = (OPENED, LABELING, CLOSING, CLOSED, RELEASED)
# Which status may follow which: a round is pushed (opened), labeled, closed once, released once.
_NEXT = {OPENED: {LABELING, CLOSING}, LABELING: {LABELING, CLOSING}, CLOSING: {CLOSED}, CLOSED: {RELEASED}}
COMPLETE, DEADLINE, MANUAL = "complete", "deadline", "manual"
CLOSE_REASONS = (COMPLETE, DEADLINE, MANUAL)


class RoundStateError(ValueError):
    """A step that the round's status does not allow (closing a closed round, releasing an open one)."""


@dataclass
class LabelRound:
    """One round of labeling: the batch that was pushed, what it still needs, and how it ended.

    `tasks` maps record_id -> Label Studio task id; `overlap` maps each ordinary record_id to the
    annotations planned for it; every `gold` record is planned for every annotator who takes part.
    `params` are the round's flow parameters, so that closing it applies the gate it was opened with.
    `embeddings` names the space the batch was chosen in (RoundPlan.embeddings: an encoder version, "pixels",
    "model", or None); rounds written before it was recorded read as None.
    Times are ISO-8601 UTC strings (the object is stored as JSON).
    """

    dataset: str
    number: int
    project_id: int
    opened_at: str
    deadline: str
    pool: str
    labels: list[str]
    strategy: str
    model_version: str | None
    record_ids: list[str]
    gold: list[str]
    overlap: dict[str, int]
    params: dict[str, Any]
    status: str = OPENED
    tasks: dict[str, int] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)
    close_reason: str | None = None
    verdict: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    released_as: str | None = None
    history: list[dict[str, str]] = field(default_factory=list)
    embeddings: str | None = None
    task: str = "classify"  # corpus.tasks; rounds written before task types read as classify

    @property
    def id(self) -> str:
        return f"{self.dataset}-r{self.number:04d}"

    @property
    def is_open(self) -> bool:
        return self.status in (OPENED, LABELING, CLOSING)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelRound:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise RoundStateError(f"round file has unknown keys {unknown}")
        return cls(**data)


def _moved(round_: LabelRound, status: str, now: datetime, **changes: Any) -> LabelRound:
    if status not in _NEXT.get(round_.status, set()):
        raise RoundStateError(f"round {round_.id} is {round_.status}; it cannot become {status}")
    history = round_.history if status == round_.status else [*round_.history, {"status": status, "at": _iso(now)}]
    return dataclasses.replace(round_, status=status, history=history, **changes)


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("times must be timezone-aware (UTC)")
    return moment.isoformat(timespec="seconds")


def open_round(
    dataset: str,
    number: int,
    project_id: int,
    *,
    pool: str,
    labels: list[str],
    strategy: str,
    model_version: str | None,
    record_ids: list[str],
    gold: list[str],
    params: dict[str, Any],
    now: datetime,
    deadline_hours: float,
    embeddings: str | None = None,
    task: str = "classify",
) -> LabelRound:
    """A new round in status `opened`, before its tasks are pushed; its deadline `deadline_hours` from now."""
    if deadline_hours <= 0:
        raise ValueError(f"deadline_hours must be > 0, got {deadline_hours}")
    stray = sorted(set(gold) - set(record_ids))
    if stray:
        raise ValueError(f"gold records must be part of the batch; {stray[:3]} are not")
    return LabelRound(
        dataset=dataset,
        number=number,
        project_id=project_id,
        opened_at=_iso(now),
        deadline=_iso(now + timedelta(hours=deadline_hours)),
        pool=pool,
        labels=list(labels),
        strategy=strategy,
        model_version=model_version,
        embeddings=embeddings,
        task=check_task(task),
        record_ids=list(record_ids),
        gold=list(gold),
        overlap={},
        params=dict(params),
        history=[{"status": OPENED, "at": _iso(now)}],
    )


def start_labeling(round_: LabelRound, tasks: dict[str, int], overlap: dict[str, int], now: datetime) -> LabelRound:
    """The round once its tasks are in Label Studio (`tasks`: record_id -> task id) with the annotations
    planned for each ordinary record (`overlap`; gold records are planned for everyone)."""
    absent = sorted(set(round_.record_ids) - set(tasks))
    if absent:
        raise RoundStateError(f"round {round_.id}: {len(absent)} planned records have no task, e.g. {absent[:3]}")
    ordinary = [rid for rid in round_.record_ids if rid not in set(round_.gold)]
    unplanned = sorted(set(ordinary) - set(overlap))
    if unplanned:
        raise RoundStateError(f"round {round_.id}: no overlap planned for {len(unplanned)} records")
    return _moved(
        round_,
        LABELING,
        now,
        tasks={rid: int(tasks[rid]) for rid in round_.record_ids},
        overlap={rid: int(overlap[rid]) for rid in ordinary},
    )


def _live_votes(annotations: pa.Table, round_: LabelRound) -> tuple[dict[str, set[str]], dict[str, datetime]]:
    """(record_id -> annotators who answered the round's task of that record: a live label (or boxes: a detect
    round's answer, [] for "no object"), or a skip (Label Studio's Skip: a cancelled annotation), which finishes
    that person's part without being a vote; annotator -> when they last answered a task of the round)."""
    live = latest_versions(annotations)
    votes: dict[str, set[str]] = defaultdict(set)
    last_seen: dict[str, datetime] = {}
    if live.num_rows == 0:
        return votes, last_seen
    skipped = pc.fill_null(live.column("was_cancelled"), False)
    drawn = pc.is_valid(live.column("boxes"))
    answered = pc.or_kleene(pc.or_kleene(pc.is_valid(live.column("label")), drawn), skipped)
    if round_.task == "multilabel":  # an empty set ("none of these") is an answer with no single label
        answered = pc.or_kleene(answered, pc.is_valid(live.column("labels")))
    live = live.filter(pc.and_(pc.invert(pc.fill_null(live.column("deleted"), False)), answered))
    ours = {task_id: rid for rid, task_id in round_.tasks.items()}
    for task_id, project, annotator, created, updated in zip(
        live.column("task_id").to_pylist(),
        live.column("project_id").to_pylist(),
        live.column("annotator").to_pylist(),
        live.column("created_at").to_pylist(),
        live.column("updated_at").to_pylist(),
        strict=True,
    ):
        if project == round_.project_id and task_id in ours and annotator is not None:
            votes[ours[task_id]].add(annotator)
            moment = updated or created
            if moment is not None and (annotator not in last_seen or moment > last_seen[annotator]):
                last_seen[annotator] = moment
    return votes, last_seen


def _held_to_gold(
    taking_part: list[str], last_seen: dict[str, datetime], now: datetime, idle_after_hours: float | None
) -> list[str]:
    """The people who owe every gold answer: everyone taking part, or (with `idle_after_hours`) those who
    answered a task of the round within that long; someone who stopped half-way no longer blocks completion."""
    if idle_after_hours is None:
        return taking_part
    since = now - timedelta(hours=idle_after_hours)
    return [a for a in taking_part if a in last_seen and last_seen[a] >= since]


def measure_progress(
    round_: LabelRound, annotations: pa.Table, now: datetime, names: dict[str, str] | None = None
) -> dict[str, Any]:
    """How far the round is: annotations done / needed, per annotator, and whether the batch is complete.

    `annotations` is every pulled annotation (ANNOTATION_SCHEMA); only live ones on the round's tasks count
    (a skip too: that person is done with the task), one per annotator and task, and an ordinary task counts
    at most its planned overlap. An annotator takes part once they answered any task of the round; every
    such annotator must answer every gold task, except, when the round's params set `idle_after_hours`, one
    who has answered nothing of the round for that long (they stopped: the others' gold answers score the
    round, theirs score only themselves). With nobody held to gold, each gold task needs one answer.
    Complete = every ordinary task has its planned annotations and the gold answers owed are in (and someone
    took part). `names` maps annotator ids to display names.
    """
    names = names or {}
    votes, last_seen = _live_votes(annotations, round_)
    taking_part = sorted(set().union(*votes.values())) if votes else []
    held = set(_held_to_gold(taking_part, last_seen, now, round_.params.get("idle_after_hours")))
    done = needed = 0
    for rid, planned in round_.overlap.items():
        needed += planned
        done += min(len(votes.get(rid, ())), planned)
    for rid in round_.gold:
        answered = votes.get(rid, set())
        needed += len(held) if held else 1
        done += len(answered & held) if held else min(len(answered), 1)
    per_annotator = {
        names.get(a, a): {
            "annotations": sum(a in v for v in votes.values()),
            "gold_answered": sum(a in votes.get(rid, ()) for rid in round_.gold),
            "gold_total": len(round_.gold),
            "active": a in held,
        }
        for a in taking_part
    }
    complete = bool(taking_part) and done == needed
    left = (datetime.fromisoformat(round_.deadline) - now).total_seconds()
    return {
        "done": done,
        "needed": needed,
        "share_done": round(done / needed, 4) if needed else 1.0,
        "complete": complete,
        "tasks_touched": sum(1 for rid in round_.record_ids if votes.get(rid)),
        "tasks": len(round_.record_ids),
        "per_annotator": per_annotator,
        "measured_at": _iso(now),
        "time_left_s": round(left),
    }


def with_progress(round_: LabelRound, progress: dict[str, Any], now: datetime) -> LabelRound:
    """The labeling round with its newest progress."""
    return _moved(round_, LABELING, now, progress=dict(progress))


def due_to_close(round_: LabelRound, progress: dict[str, Any], now: datetime) -> str | None:
    """Why the round should close now: "complete" (its batch is done), "deadline" (its time is up), or None."""
    if round_.status != LABELING:
        return None
    if progress.get("complete"):
        return COMPLETE
    if now >= datetime.fromisoformat(round_.deadline):
        return DEADLINE
    return None


def start_closing(round_: LabelRound, reason: str, now: datetime) -> LabelRound:
    """The round being closed for `reason` (one of CLOSE_REASONS); a round closes once."""
    if reason not in CLOSE_REASONS:
        raise ValueError(f"unknown close reason {reason!r}; expected one of {CLOSE_REASONS}")
    return _moved(round_, CLOSING, now, close_reason=reason)


def judge_share_done(gate: dict[str, Any], share_done: float, minimum: float) -> dict[str, Any]:
    """The gate of a round closed before its batch was complete, with "share done >= minimum" added."""
    ok = share_done >= minimum
    criterion = {"name": "share_done", "value": share_done, "threshold": minimum, "ok": ok}
    reasons = list(gate["reasons"]) + ([] if ok else [f"only {share_done:.0%} of the planned annotations done"])
    return {**gate, "criteria": [*gate["criteria"], criterion], "reasons": reasons, "passed": gate["passed"] and ok}


def finish_round(round_: LabelRound, verdict: dict[str, Any], summary: dict[str, Any], now: datetime) -> LabelRound:
    """The closed round with its gate verdict (passed or failed, with reasons) and its summary."""
    return _moved(round_, CLOSED, now, verdict=dict(verdict), summary=dict(summary))


def mark_released(round_: LabelRound, version: str, now: datetime) -> LabelRound:
    """The round whose labels went into release `version` of its dataset."""
    if not (round_.verdict or {}).get("passed"):
        raise RoundStateError(f"round {round_.id} did not pass its quality gate; it is not released")
    return _moved(round_, RELEASED, now, released_as=version)

"""The label round's Prefect artifacts as Markdown: progress while people label, the verdict once it closed."""

from __future__ import annotations

from typing import Any

from labeling.round_state import LabelRound


def _time_left(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds <= 0:
        return "past the deadline"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours} h {rest // 60} min"


def progress_markdown(round_: LabelRound) -> str:
    """The open round: share done, time left, and each annotator's annotations and gold answers."""
    progress = round_.progress or {}
    share = progress.get("share_done")
    lines = [
        f"# Label round {round_.id}: {round_.status}",
        "",
        f"Label Studio: {progress.get('view_url', '-')}",
        "",
        "| what | value |",
        "|---|---|",
        f"| tasks | {len(round_.record_ids)} ({len(round_.gold)} gold) |",
        f"| annotations done / needed | {progress.get('done', 0)} / {progress.get('needed', '-')} |",
        f"| share done | {'-' if share is None else f'{share:.0%}'} |",
        f"| deadline | {round_.deadline} ({_time_left(progress.get('time_left_s'))}) |",
        f"| chosen by | {round_.strategy}{f' (model {round_.model_version})' if round_.model_version else ''} |",
        f"| embeddings | {round_.embeddings or '-'} |",
        "",
        "| annotator | annotations | gold answered |",
        "|---|---|---|",
    ]
    for name, entry in sorted((progress.get("per_annotator") or {}).items()):
        lines.append(f"| {name} | {entry['annotations']} | {entry['gold_answered']} / {entry['gold_total']} |")
    return "\n".join(lines)


def verdict_markdown(round_: LabelRound) -> str:
    """The closed round: why it closed, its figures and the quality gate criterion by criterion."""
    verdict = round_.verdict or {"passed": False, "criteria": [], "reasons": []}
    summary = round_.summary or {}
    outcome = "passed: flywheel.round.passed emitted" if verdict["passed"] else "FAILED: flywheel.round.failed"
    figures: dict[str, Any] = {
        "closed because": round_.close_reason,
        "annotations": summary.get("annotations"),
        "labeled records": summary.get("labeled_records"),
        "new labels": summary.get("new_labels"),
        "to review": summary.get("review"),
        "share done": (round_.progress or {}).get("share_done"),
    }
    lines = [f"# Label round {round_.id}: {outcome}", "", "| what | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in figures.items()]
    lines += ["", "| criterion | value | threshold | ok |", "|---|---|---|---|"]
    lines += [f"| {c['name']} | {c['value']} | {c['threshold']} | {c['ok']} |" for c in verdict["criteria"]]
    lines += [f"- {reason}" for reason in verdict["reasons"]]
    cards = summary.get("scorecards") or []
    if cards and round_.task == "detect":
        lines += _box_scorecard_lines(cards)
    elif cards:
        lines += ["", "| annotator | annotations | gold accuracy | agreement with consensus |", "|---|---|---|---|"]
        lines += [
            f"| {c['annotator']} | {c['annotations']} | {c.get('gold_accuracy')} | {c.get('consensus_agreement')} |"
            for c in cards
        ]
    return "\n".join(lines)


def _box_scorecard_lines(cards: list[dict[str, Any]]) -> list[str]:
    """A detect round's scorecards (labeling.box_rounds): F1 on gold and with the consensus, flags per reason."""
    lines = [
        "",
        "| annotator | images | boxes | gold F1 | F1 with consensus | missing | extra | misplaced | wrong label |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    keys = ("images", "boxes", "gold_f1", "consensus_f1", "missing", "extra", "misplaced", "wrong_label")
    for card in cards:
        values = [f"{v:.2f}" if isinstance(v, float) else str(v) for v in (card.get(k) for k in keys)]
        lines.append(f"| {card['annotator']} | " + " | ".join(values) + " |")
    return lines

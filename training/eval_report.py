"""The fixed evaluation set in a model report: the set, this model's figures on it, and every version side by side."""

from __future__ import annotations

from typing import Any

from corpus.releases.evalset import COUNTED_NOTES, SCORE_COLUMNS
from corpus.tasks import task_of

# The per-version table's heading by task type: what its columns measure.
VERSION_TABLE_TITLES = {
    "classify": "Accuracy per version",
    "text": "Accuracy per version",
    "multilabel": "Label-set scores per version",
    "detect": "mAP per version",
}
# What a model lacking a label means for each figure, said under the table (score_predictions, score_label_sets
# and the detector's scorer in training.comparison count it that way).
LACKING_NOTES = {
    "classify": "an item of a class the model lacks counts as wrong",
    "text": "an item of a class the model lacks counts as wrong",
    "multilabel": (
        "a label the model lacks (first labeled after it was trained) counts as missed on every item that has "
        "it: recall and F1 0, AP 0, and those items are never an exact match"
    ),
    "detect": "a box of a label the detector lacks counts as missed: that label's AP is 0 and lowers the mean",
}


def fmt(value: Any, digits: int = 3) -> str:
    """A figure for a report cell: floats to `digits` places, None as a dash."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def eval_set_head(metrics: dict[str, Any]) -> list[str]:
    """The set (size, id, since, frozen or growing, what it holds per label) and this model's figures on it;
    a line saying there is none for a release from before fixed evaluation sets."""
    eval_set = metrics.get("eval_set")
    if not eval_set:
        return ["", "## Fixed evaluation set", "", "None: the release predates fixed evaluation sets."]
    task = task_of(metrics)
    state = "frozen" if eval_set.get("frozen") else f"growing to {eval_set.get('target')}"
    figures = ", ".join(f"{title} **{fmt(eval_set.get(key))}**" for key, title in SCORE_COLUMNS[task])
    lines = [
        "",
        "## Fixed evaluation set",
        "",
        f"{eval_set.get('n')} items (`{eval_set.get('id')}`, since {eval_set.get('since')}, {state}); {figures}.",
    ]
    counts = eval_set.get("class_counts")
    if counts:
        lines += [
            "",
            f"{COUNTED_NOTES[eval_set.get('counted') or 'items']}: " + ", ".join(f"{k} {v}" for k, v in counts.items()),
        ]
    if eval_set.get("unknown_label"):
        lacking = ", ".join(eval_set.get("lacking_labels") or []) or "some"
        lines += [
            "",
            f"This model lacks labels ({lacking}) of {eval_set['unknown_label']} answers: {LACKING_NOTES[task]}.",
        ]
    return lines


def eval_by_version_lines(metrics: dict[str, Any]) -> list[str]:
    """Each version's newest model on the same eval items, oldest first, this model marked, in the figures of
    the model's task type; nothing without an eval set."""
    if not metrics.get("eval_set"):
        return []
    task = task_of(metrics)
    columns = SCORE_COLUMNS[task]
    lines = [
        "",
        f"## {VERSION_TABLE_TITLES[task]} (same evaluation set)",
        "",
        "| release | model | " + " | ".join(title for _, title in columns) + " | items | answers of labels it lacks |",
        "|---|---|" + "---|" * (len(columns) + 2),
    ]
    for row in metrics.get("eval_by_version") or []:
        name = f"**{metrics.get('model_version')}** (this model)" if row.get("current") else row.get("model_version")
        if row.get("error"):
            lines.append(f"| {row.get('release')} | {name} | not scored: {row['error']} |" + " |" * (len(columns) + 1))
            continue
        values = [row.get(key) for key, _ in columns] + [row.get("n"), row.get("unknown_label")]
        lines.append(f"| {row.get('release')} | {name} | " + " | ".join(fmt(v) for v in values) + " |")
    lines += ["", f"Every model is scored on exactly these items; {LACKING_NOTES[task]}."]
    return lines


def describe_test_figures(metrics: dict[str, Any]) -> str:
    """A model's headline test figures: accuracy; micro F1 and mAP for a multi-label model; mAP for a detector."""
    if metrics.get("task") == "multilabel":
        return f"test micro F1 {fmt(metrics.get('test_micro_f1'))}, mAP {fmt(metrics.get('test_map'))}"
    if metrics.get("task") == "detect":
        both = fmt(metrics.get("test_map_50")), fmt(metrics.get("test_map_50_95"))
        return f"test mAP@0.5 {both[0]}, mAP@[.5:.95] {both[1]}"
    return f"test accuracy {fmt(metrics.get('test_accuracy'))}"


def describe_eval_figure(metrics: dict[str, Any]) -> str:
    """The model's headline figure on the fixed eval set, named as its task scores it (SCORE_COLUMNS)."""
    eval_set = metrics.get("eval_set")
    key, name = SCORE_COLUMNS[task_of(metrics)][0]
    if not eval_set or eval_set.get(key) is None:
        return "no fixed eval set items"
    return f"eval-set {name} {fmt(eval_set[key])} on {eval_set['n']} items"

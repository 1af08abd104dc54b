"""Imported label sets (multi-label answers): how a file's cell becomes a set, and the checks that refuse it.

One rule for every format: a set is a list of strings, or one string joined by ";" (what Flywheel's own csv
export writes; "|" and "," are ordinary characters of a label). Members are stripped of surrounding spaces.
The empty set ("none of these": an empty list, or the empty string, in CSV a quoted "") is an answer; a
missing value (null, no key, an unquoted empty CSV cell) is no answer. Refused, naming the file and the row:
a member that is not a string, an empty member, a member holding ";" (it could not be written back), a label
named twice in one set, more than MAX_SET_SIZE labels in one set.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from corpus.releases.multilabel import SET_SEPARATOR
from crawlers.importers.items import ImportSourceError

# A label set is a handful of tags; a thousand already means a column of something else (ids, tokens).
MAX_SET_SIZE = 1000
LABEL_SET_COLUMNS = ("labels",)  # the column of sets in a manifest, as Flywheel's csv export names it


class LabelSetError(ValueError):
    """A cell that is not a label set; the message says what is wrong with it, the caller where it is."""


def parse_label_set(value: Any) -> list[str] | None:
    """The sorted label set a cell holds (see the module's rule), None when it holds no answer."""
    if value is None:
        return None
    if isinstance(value, str):
        members: list[Any] = [] if value.strip() == "" else value.split(SET_SEPARATOR)
    elif isinstance(value, list | tuple):
        members = list(value)
    else:
        raise LabelSetError(f"a label set is a list of strings or a ';'-joined string, got {type(value).__name__}")
    if len(members) > MAX_SET_SIZE:
        raise LabelSetError(f"{len(members)} labels in one set: at most {MAX_SET_SIZE}")
    names: list[str] = []
    for number, member in enumerate(members, 1):
        if not isinstance(member, str):
            raise LabelSetError(f"member {number} is {type(member).__name__} {member!r}, not a string")
        name = member.strip()
        if not name:
            raise LabelSetError(f"member {number} is empty")
        if SET_SEPARATOR in name:
            raise LabelSetError(f"label {name!r} holds the set separator {SET_SEPARATOR!r}")
        names.append(name)
    twice = sorted({n for n in names if names.count(n) > 1}) if len(set(names)) < len(names) else []
    if twice:
        raise LabelSetError(f"label {twice[0]!r} named twice in one set")
    return sorted(names)


def check_label_sets(path: Any, cells: Iterable[tuple[str, Any]]) -> None:
    """Every (where, cell) of a file parses as a label set, else ImportSourceError naming the file and where."""
    for where, cell in cells:
        try:
            parse_label_set(cell)
        except LabelSetError as exc:
            raise ImportSourceError(f"{path}: {where}: {exc}") from None


def refuse_mixed(path: Any, where: str, single: str, sets: str) -> ImportSourceError:
    """The one-line error for a file that gives single labels and label sets side by side."""
    return ImportSourceError(
        f"{path}: {where} gives a single label ({single}) in a file of label sets ({sets}): one kind a file"
    )

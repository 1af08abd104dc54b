"""Annotators by name: Label Studio user ids turned into the usernames or emails people know them by."""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

ANNOTATOR_NAME = "annotator_name"


def annotator_name(annotator: str | int | None, names: Mapping[int, str]) -> str | None:
    """The name of one annotator id (as stored: str(user id)); an id Label Studio no longer knows keeps a
    readable `user <id>` rather than a bare number that could be mistaken for a count."""
    if annotator is None:
        return None
    text = str(annotator)
    if not text.isdigit():
        return text  # already a name
    return names.get(int(text), f"user {text}")


def name_annotators(table: pa.Table, names: Mapping[int, str], *, column: str = "annotator") -> pa.Table:
    """`table` with an ANNOTATOR_NAME string column (replaced if present) naming each row's `column` id."""
    if column not in table.column_names:
        raise ValueError(f"table lacks column {column!r}")
    values = pa.array([annotator_name(a, names) for a in table.column(column).to_pylist()], type=pa.string())
    if ANNOTATOR_NAME in table.column_names:
        return table.set_column(table.column_names.index(ANNOTATOR_NAME), ANNOTATOR_NAME, values)
    return table.append_column(ANNOTATOR_NAME, values)


def rename_keys(by_annotator: Mapping[str, object], names: Mapping[int, str]) -> dict[str, object]:
    """A per-annotator mapping (a scorecard: annotator id -> stats) keyed by name instead of id.

    Two ids with the same name would collide; Label Studio usernames and emails are unique, so that only
    happens for a name that is also someone's id, and it raises ValueError rather than merge two people.
    """
    out: dict[str, object] = {}
    for key, value in by_annotator.items():
        name = annotator_name(key, names) or str(key)
        if name in out:
            raise ValueError(f"two annotators would both be named {name!r}")
        out[name] = value
    return out

"""Pre-annotations of a round's tasks: the model's predictions, else an import's labels for people to confirm.

An import whose label policy is `preannotate` writes its labels as prediction rows under
`imports/<source>/labels/` (crawlers.importers.labels.prediction_rows). When a round's batch has no model
prediction for a record, the imported label becomes its pre-annotation, with model_version
`imported:<source>` so Label Studio (and the pull) can tell it from a model's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from corpus.schema import PREDICTION_SCHEMA
from corpus.store import DataRoot

IMPORTS_DIR = "imports"
ORIGIN_PREFIX = "imported:"
VERSION_COLUMN = "model_version"
PREANNOTATION_SCHEMA = PREDICTION_SCHEMA.append(pa.field(VERSION_COLUMN, pa.string()))


def _with_version(table: pa.Table, version: str | None) -> pa.Table:
    table = table.select(PREDICTION_SCHEMA.names).cast(PREDICTION_SCHEMA)
    return table.append_column(VERSION_COLUMN, pa.array([version] * table.num_rows, pa.string()))


def read_imported_predictions(
    root: DataRoot, origins: Iterable[str], record_ids: Iterable[str] | None = None
) -> pa.Table | None:
    """The imported labels of `origins` (`imported:<source>`) as PREANNOTATION_SCHEMA rows (model_version =
    the origin), only for `record_ids` when given; None when there are none. For one record, the first of
    `origins` (in their order) that labeled it wins, and within one origin its newest file."""
    wanted = None if record_ids is None else pa.array(list(record_ids), pa.string())
    parts = []
    for origin in origins:
        if not origin.startswith(ORIGIN_PREFIX):
            raise ValueError(f"not an import origin: {origin!r} (expected imported:<source>)")
        folder = f"{IMPORTS_DIR}/{origin.removeprefix(ORIGIN_PREFIX)}/labels"
        for path in sorted(root.list(folder, ".parquet"), reverse=True):
            table = root.read_table(path, PREDICTION_SCHEMA)
            if wanted is not None:
                table = table.filter(pc.is_in(table.column("record_id"), wanted))
            parts.append(_with_version(table, origin))
    if not parts:
        return None
    return _first_per_record(pa.concat_tables(parts))


def _first_per_record(table: pa.Table) -> pa.Table:
    seen: set[str] = set()
    keep = []
    for rid in table.column("record_id").to_pylist():
        keep.append(rid not in seen)
        seen.add(rid)
    return table.filter(pa.array(keep, pa.bool_()))


def merge_preannotations(
    model_predictions: pa.Table | None,
    model_version: str | None,
    imported: pa.Table | None,
    labels: Sequence[str] | None = None,
) -> pa.Table | None:
    """One pre-annotation per record (PREANNOTATION_SCHEMA): the model's prediction where it has one (tagged
    `model_version`), else the imported label (tagged its origin). Imported labels outside `labels` (the
    round's label set, when given) are left out: Label Studio could not show them. None when nothing is left.
    """
    parts = []
    covered: set[str] = set()
    if model_predictions is not None and model_predictions.num_rows:
        if not model_version:
            raise ValueError("model predictions need their model_version")
        parts.append(_with_version(model_predictions, model_version))
        covered = set(model_predictions.column("record_id").to_pylist())
    if imported is not None and imported.num_rows:
        ids = imported.column("record_id").to_pylist()
        found = imported.column("predicted_label").to_pylist()
        known = set(labels) if labels is not None else None
        keep = [
            rid not in covered and label is not None and (known is None or label in known)
            for rid, label in zip(ids, found, strict=True)
        ]
        parts.append(_first_per_record(imported.filter(pa.array(keep, pa.bool_())).cast(PREANNOTATION_SCHEMA)))
    merged = pa.concat_tables(parts) if parts else None
    return merged if merged is not None and merged.num_rows else None


def preannotation_version(predictions: pa.Table | None, model_version: str | None) -> str | None:
    """The model_version a project should pre-fill its labeling UI with: the round's model, else the import
    origin behind most of the pre-annotations (Label Studio pre-fills from one version only)."""
    if model_version:
        return model_version
    if predictions is None or VERSION_COLUMN not in predictions.column_names or not predictions.num_rows:
        return None
    counts = Counter(v for v in predictions.column(VERSION_COLUMN).to_pylist() if v)
    return min(counts.items(), key=lambda item: (-item[1], item[0]))[0] if counts else None

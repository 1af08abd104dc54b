"""How record tables are stored in release files: a form every Parquet reader represents (HF `datasets` too).

The record schema keeps `pii_counts` as map<string, int32>; Hugging Face `datasets` has no dtype for an Arrow
map ("does not have a datasets dtype equivalent"), so release files store it as list<struct<entity, count>>,
and load_release turns it back into the map. Releases written before this change (a map column) load as before.
"""

from __future__ import annotations

import pyarrow as pa

PII_COLUMN = "pii_counts"
PII_ENTRY = pa.struct([pa.field("entity", pa.string()), pa.field("count", pa.int32())])
PII_STORED_TYPE = pa.list_(PII_ENTRY)
PII_MAP_TYPE = pa.map_(pa.string(), pa.int32())


def to_release_storage(table: pa.Table) -> pa.Table:
    """`table` (record schema) with `pii_counts` as a list of {entity, count} structs, as release files hold it."""
    index = table.schema.get_field_index(PII_COLUMN)
    if index < 0 or not pa.types.is_map(table.schema.field(index).type):
        return table
    return table.set_column(index, pa.field(PII_COLUMN, PII_STORED_TYPE), table.column(index).cast(PII_STORED_TYPE))


def _entries_to_map(values: list) -> pa.Array:
    """list<struct<entity, count>> values (as Python) as a map<string, int32> array, nulls kept."""
    # Through Python: Arrow builds no map from a sliced list with nulls, and the column is a few pairs a row.
    pairs = [None if v is None else [(e["entity"], e["count"]) for e in v] for v in values]
    return pa.array(pairs, PII_MAP_TYPE)


def from_release_storage(table: pa.Table) -> pa.Table:
    """A table read from a release file with `pii_counts` back as the record schema's map (no-op for a map)."""
    index = table.schema.get_field_index(PII_COLUMN)
    if index < 0 or not pa.types.is_list(table.schema.field(index).type):
        return table
    values = _entries_to_map(table.column(index).to_pylist())
    return table.set_column(index, pa.field(PII_COLUMN, PII_MAP_TYPE), values)

"""The record schema: one Arrow schema for every row Flywheel stores, versioned in its metadata."""

from __future__ import annotations

import hashlib

import pyarrow as pa

from corpus.boxes import BOXES_TYPE

SCHEMA_VERSION = "1"

KINDS = ("image", "text")
LABEL_SOURCES = ("human", "consensus", "model")
SPLITS = ("train", "val", "test")

_FIELDS: list[pa.Field] = [
    # identity: fixed at fetch time, never rewritten
    pa.field("record_id", pa.string(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),
    pa.field("url", pa.string()),
    pa.field("page_url", pa.string()),
    pa.field("source", pa.string()),
    pa.field("crawl_run", pa.string()),
    pa.field("fetched_at", pa.timestamp("us", tz="UTC")),
    # content
    pa.field("image", pa.binary()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("mime", pa.string()),
    pa.field("title", pa.string()),
    pa.field("text", pa.string()),
    pa.field("lang", pa.string()),
    pa.field("alt_text", pa.string()),
    pa.field("caption", pa.string()),
    pa.field("context_text", pa.string()),  # page text around an image (paragraphs beside its figure)
    # curation
    pa.field("content_hash", pa.string()),
    pa.field("phash", pa.uint64()),
    pa.field("near_dup_cluster", pa.string()),
    pa.field("drop_reason", pa.string()),
    # privacy
    pa.field("pii_counts", pa.map_(pa.string(), pa.int32())),
    pa.field("faces_blurred", pa.int32()),
    pa.field("exif_stripped", pa.bool_()),
    pa.field("scrub_version", pa.string()),
    # labels
    pa.field("label", pa.string()),
    pa.field("label_source", pa.string()),
    pa.field("label_confidence", pa.float32()),
    pa.field("annotators", pa.list_(pa.string())),
    # an image's labeled boxes (corpus.boxes, versioned there); null where nobody drew boxes, [] for "no object".
    # Added as a nullable column: files written before it conform with nulls, so the record version stays.
    pa.field("boxes", BOXES_TYPE),
    # a multi-label record's set of classes (corpus.tasks "multilabel"); null for other task types.
    pa.field("labels", pa.list_(pa.string())),
    # release
    pa.field("split", pa.string()),
]

RECORD_SCHEMA = pa.schema(_FIELDS, metadata={b"flywheel.schema_version": SCHEMA_VERSION.encode()})

# One row per Label Studio annotation, as pulled; append-only under annotations/.
ANNOTATION_SCHEMA = pa.schema(
    [
        pa.field("annotation_id", pa.int64(), nullable=False),
        pa.field("task_id", pa.int64(), nullable=False),
        pa.field("project_id", pa.int64(), nullable=False),
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("label", pa.string()),
        pa.field("labels", pa.list_(pa.string())),  # multilabel: every choice of a choice="multiple" result
        pa.field("boxes", BOXES_TYPE),  # detect: the annotator's rectangles (corpus.boxes)
        pa.field("annotator", pa.string()),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
        pa.field("updated_at", pa.timestamp("us", tz="UTC")),
        pa.field("lead_time", pa.float64()),
        pa.field("was_cancelled", pa.bool_()),
        pa.field("deleted", pa.bool_()),
        pa.field("pulled_at", pa.timestamp("us", tz="UTC")),
    ],
    metadata={b"flywheel.schema_version": SCHEMA_VERSION.encode()},
)

# One row per pool record scored by a model; written under models/<version>/predictions.parquet.
PREDICTION_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("predicted_label", pa.string()),
        pa.field("confidence", pa.float32()),
        pa.field("probs", pa.list_(pa.float32())),
        pa.field("embedding", pa.list_(pa.float32())),
        pa.field("boxes", BOXES_TYPE),  # detect: predicted boxes, each with its score
    ],
    metadata={b"flywheel.schema_version": SCHEMA_VERSION.encode()},
)


def make_record_id(content: bytes) -> str:
    """Identity of a record: SHA-256 of the bytes as fetched (first 128 bits, hex)."""
    return hashlib.sha256(content).hexdigest()[:32]


class RecordSchemaError(ValueError):
    """A table that is not a record table; the one-line message names the file (if known) and the column."""

    def __init__(self, problem: str, source: str | None = None, column: str | None = None) -> None:
        where = "".join([f"{source}: " if source else "", f"column {column!r}: " if column else ""])
        super().__init__(f"{where}{problem}".replace("\n", " "))
        self.source, self.column = source, column


def _same_family(given: pa.DataType, wanted: pa.DataType) -> bool:
    """True if a column stored as `given` holds `wanted` values without reinterpretation (an int is no id)."""
    families = [
        (pa.types.is_string, pa.types.is_large_string),
        (pa.types.is_binary, pa.types.is_large_binary),
        (pa.types.is_integer,),
        (pa.types.is_floating,),
        (pa.types.is_timestamp,),
    ]
    if given == wanted or pa.types.is_null(given):
        return True
    for family in families:
        if any(f(given) for f in family) and any(f(wanted) for f in family):
            return True
    return given.id == wanted.id


def check_records(table_or_schema: pa.Table | pa.Schema, source: str | None = None, schema: pa.Schema = RECORD_SCHEMA):
    """Raise RecordSchemaError unless the columns are `schema`'s (a subset), each of its type family, and the
    non-nullable ones present (and, for a table, without nulls). What raw input must pass before a stage reads it.
    """
    given = table_or_schema if isinstance(table_or_schema, pa.Schema) else table_or_schema.schema
    unknown = [name for name in given.names if schema.get_field_index(name) < 0]
    if unknown:
        raise RecordSchemaError(f"columns not in the record schema: {unknown}", source, unknown[0])
    for field in schema:
        if field.name not in given.names:
            if not field.nullable:
                raise RecordSchemaError("missing, and it may not be null", source, field.name)
            continue
        stored = given.field(field.name).type
        if not _same_family(stored, field.type):
            raise RecordSchemaError(f"stored as {stored}, the record schema wants {field.type}", source, field.name)
        if isinstance(table_or_schema, pa.Table) and not field.nullable:
            nulls = table_or_schema.column(field.name).null_count
            if nulls:
                raise RecordSchemaError(f"{nulls} null value(s) in a non-nullable column", source, field.name)


def conform(table: pa.Table, schema: pa.Schema = RECORD_SCHEMA, source: str | None = None) -> pa.Table:
    """Return `table` with exactly `schema`'s columns, in order: missing ones null, others cast.

    Raises RecordSchemaError (a ValueError) naming the columns `schema` does not know, so a typo never drops
    data, or a column that cannot be cast (and `source`, the file it came from, when given).
    """
    unknown = [name for name in table.column_names if schema.get_field_index(name) < 0]
    if unknown:
        raise RecordSchemaError(f"columns not in the record schema: {unknown}", source, unknown[0])
    columns = []
    for field in schema:
        if field.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, type=field.type))
            continue
        try:
            columns.append(table.column(field.name).cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise RecordSchemaError(f"cannot cast to {field.type}: {exc}", source, field.name) from exc
    try:
        return pa.Table.from_arrays(columns, schema=schema)
    except pa.ArrowInvalid as exc:  # a null in a non-nullable column
        raise RecordSchemaError(str(exc), source) from exc


def empty(schema: pa.Schema = RECORD_SCHEMA) -> pa.Table:
    """An empty table with `schema`."""
    return schema.empty_table()

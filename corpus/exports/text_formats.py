"""Exports of a text release: csv, Hugging Face datasets (Value string + ClassLabel) and jsonl, read back to check."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from corpus.exports.rows import ExportRows, export_labels
from corpus.releases.versions import Release
from corpus.schema import SPLITS

TEXT_FORMATS = ("csv", "hf", "jsonl")
# The columns every text export carries beside text and label (hf and jsonl; csv the same, in this order).
TEXT_COLUMNS = ("record_id", "title", "text", "lang", "url", "page_url", "source", "label_source")
_SPLIT_NAMES = {"csv": {}, "jsonl": {}, "hf": {"val": "validation"}}


def split_file_name(fmt: str, split: str) -> str:
    """The name a split has in an export format (hf calls val "validation")."""
    return _SPLIT_NAMES[fmt].get(split, split)


def check_text_format(fmt: str) -> None:
    """ValueError (one line) for a format that cannot hold a text release."""
    if fmt not in TEXT_FORMATS:
        raise ValueError(f"a text release cannot be exported as {fmt}: its formats are {', '.join(TEXT_FORMATS)}")


def select_text_rows(release: Release) -> ExportRows:
    """The labeled text rows of each split, sorted by record_id (other rows are counted in `skipped`)."""
    splits: dict[str, pa.Table] = {}
    skipped = 0
    for split in SPLITS:
        table = release.split(split)
        keep = pc.fill_null(pc.and_(pc.equal(table.column("kind"), "text"), pc.is_valid(table.column("text"))), False)
        skipped += table.num_rows - (pc.sum(keep).as_py() or 0)
        splits[split] = table.filter(keep).sort_by("record_id")
    return ExportRows(labels=export_labels(release), splits=splits, skipped={"not text": skipped} if skipped else {})


def hf_text_features(labels: list[str]) -> dict:
    """The `datasets` Features (as Features.to_dict() writes them) of a text hf export."""
    string = {"dtype": "string", "_type": "Value"}
    features: dict = {c: string for c in TEXT_COLUMNS}
    features["label"] = {"names": list(labels), "_type": "ClassLabel"}
    features["label_confidence"] = {"dtype": "float32", "_type": "Value"}
    return features


def _split_table(table: pa.Table, rows: ExportRows) -> pa.Table:
    labels = table.column("label").to_pylist()
    columns = {c: table.column(c) for c in TEXT_COLUMNS}
    columns["label"] = pa.array([rows.label_index(lab) for lab in labels], pa.int64())
    columns["label_confidence"] = table.column("label_confidence").cast(pa.float32())
    return pa.table({name: columns[name] for name in hf_text_features(rows.labels)})


def write_text_files(fmt: str, rows: ExportRows, manifest: dict) -> Iterator[tuple[str, bytes]]:
    """(path, bytes) of every file of a text export in `fmt` (check_text_format first)."""
    check_text_format(fmt)
    for split, table in rows.splits.items():
        out = _split_table(table, rows)
        name = split_file_name(fmt, split)
        if fmt == "hf":
            features = hf_text_features(rows.labels)
            out = out.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})
            sink = pa.BufferOutputStream()
            pq.write_table(out, sink, compression="zstd")
            yield f"data/{name}-00000-of-00001.parquet", sink.getvalue().to_pybytes()
        elif fmt == "csv":
            sink = io.BytesIO()
            named = out.set_column(out.schema.get_field_index("label"), "label", table.column("label"))
            pacsv.write_csv(named.append_column("label_index", out.column("label").cast(pa.int32())), sink)
            yield f"{name}.csv", sink.getvalue()
        else:
            lines = [json.dumps({**r, "label": rows.labels[r["label"]]}, ensure_ascii=False) for r in out.to_pylist()]
            yield f"{name}.jsonl", ("\n".join(lines) + "\n" if lines else "").encode()
    if fmt == "hf":
        yield "README.md", _readme(manifest, rows)


def _readme(manifest: dict, rows: ExportRows) -> bytes:
    lines = ["---", f"license: {json.dumps(manifest.get('licence') or 'other')}", "configs:", "- config_name: default"]
    lines.append("  data_files:")
    for split in SPLITS:
        name = split_file_name("hf", split)
        lines += [f"  - split: {name}", f'    path: "data/{name}-00000-of-00001.parquet"']
    lines += ["---", "", f"# {manifest['dataset']} {manifest['version']} (text classification)", ""]
    lines += [f"Release id `{manifest['release_id']}`, exported by Flywheel. Labels (index: name):", ""]
    lines += [f"- {i}: {label}" for i, label in enumerate(rows.labels)]
    return ("\n".join(lines) + "\n").encode()


def texts_in(fmt: str, path: str, data: bytes) -> Iterator[tuple[str, str]]:
    """(record_id, text) of every record inside one written file, read as its consumer would."""
    if path.endswith(".parquet"):
        table = pq.read_table(pa.BufferReader(data), columns=["record_id", "text"])
    elif path.endswith(".csv"):
        options = pacsv.ConvertOptions(column_types={"record_id": pa.string(), "text": pa.string()})
        table = pacsv.read_csv(pa.BufferReader(data), convert_options=options).select(["record_id", "text"])
    elif path.endswith(".jsonl"):
        found = [json.loads(line) for line in data.decode().splitlines() if line]
        table = pa.table({"record_id": [r["record_id"] for r in found], "text": [r["text"] for r in found]})
    else:
        return
    yield from zip(table.column("record_id").to_pylist(), table.column("text").to_pylist(), strict=True)


def release_texts(rows: ExportRows) -> dict[str, str]:
    """record_id -> text of every row a text export writes."""
    return {
        rid: text
        for table in rows.splits.values()
        for rid, text in zip(table.column("record_id").to_pylist(), table.column("text").to_pylist(), strict=True)
    }

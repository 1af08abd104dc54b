"""The stage runner: pure `apply(table, cfg) -> StageOutput` functions, run with reports and run keys."""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel

from corpus.schema import RECORD_SCHEMA, conform
from corpus.store import DataRoot


@dataclass
class StageOutput:
    """What a stage returns: rows kept, rows dropped (each with `drop_reason`), and counters."""

    kept: pa.Table
    dropped: pa.Table
    counters: dict[str, int] = field(default_factory=dict)


def split_by_reason(table: pa.Table, reasons: Sequence[str | None]) -> tuple[pa.Table, pa.Table]:
    """Split `table` into (kept, dropped) by a per-row reason; None keeps the row.

    The dropped rows carry their reason in `drop_reason`, so nothing is lost silently.
    """
    if len(reasons) != table.num_rows:
        raise ValueError(f"{len(reasons)} reasons for {table.num_rows} rows")
    reason_array = pa.array(list(reasons), type=pa.string())
    is_dropped = pc.is_valid(reason_array)
    kept = table.filter(pc.invert(is_dropped))
    dropped = table.filter(is_dropped)
    dropped_reasons = reason_array.filter(is_dropped)
    if "drop_reason" in dropped.column_names:
        dropped = dropped.set_column(dropped.schema.get_field_index("drop_reason"), "drop_reason", dropped_reasons)
    else:
        dropped = dropped.append_column("drop_reason", dropped_reasons)
    return kept, dropped


def count_reasons(dropped: pa.Table) -> dict[str, int]:
    """Rows dropped per reason."""
    if dropped.num_rows == 0 or "drop_reason" not in dropped.column_names:
        return {}
    return dict(sorted(Counter(dropped.column("drop_reason").to_pylist()).items()))


@dataclass(frozen=True)
class Stage:
    """A named, versioned pure function over record tables; bump `version` when its output changes."""

    name: str
    version: str
    apply: Callable[[pa.Table, Any], StageOutput]


def compute_run_key(stage: Stage, cfg: BaseModel | None, input_fingerprint: Any) -> str:
    """Hash of (stage version, config, input fingerprint): equal keys mean equal outputs."""
    payload = {
        "stage": stage.name,
        "version": stage.version,
        "config": cfg.model_dump(mode="json") if cfg is not None else None,
        "inputs": input_fingerprint,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_stage(
    root: DataRoot,
    stage: Stage,
    cfg: BaseModel | None,
    inputs: Sequence[str],
    area: str = "curated",
) -> dict[str, Any]:
    """Run `stage` over the kept rows under `inputs` and write `<area>/<stage>-<key>/`.

    Writes `kept/part-0000.parquet`, `dropped/part-0000.parquet`, `_report.json` and, last,
    `_SUCCESS` holding the run key. A run whose `_SUCCESS` already exists is skipped and its
    report returned with `skipped: True`. Returns the report, which names the output folder.
    """
    run_key = compute_run_key(stage, cfg, root.fingerprint(inputs))
    out = f"{area}/{stage.name}-{run_key}"
    if root.exists(f"{out}/_SUCCESS") and root.read_bytes(f"{out}/_SUCCESS").decode() == run_key:
        report = root.read_json(f"{out}/_report.json")
        report["skipped"] = True
        return report
    started = time.perf_counter()
    table = root.read_tables(inputs)
    result = stage.apply(table, cfg)
    kept = conform(result.kept, RECORD_SCHEMA)
    dropped = conform(result.dropped, RECORD_SCHEMA)
    if kept.num_rows + dropped.num_rows != table.num_rows:
        raise RuntimeError(
            f"stage {stage.name} lost rows: {table.num_rows} in, {kept.num_rows} kept + {dropped.num_rows} dropped"
        )
    root.write_table(f"{out}/kept/part-0000.parquet", kept)
    root.write_table(f"{out}/dropped/part-0000.parquet", dropped)
    report = {
        "stage": stage.name,
        "version": stage.version,
        "run_key": run_key,
        "output": out,
        "inputs": list(inputs),
        "config": cfg.model_dump(mode="json") if cfg is not None else None,
        "rows_in": table.num_rows,
        "kept": kept.num_rows,
        "dropped": dropped.num_rows,
        "dropped_by_reason": count_reasons(dropped),
        "counters": result.counters,
        "seconds": round(time.perf_counter() - started, 3),
        "finished_at": datetime.now(UTC).isoformat(),
        "skipped": False,
    }
    root.write_json(f"{out}/_report.json", report)
    root.write_bytes(f"{out}/_SUCCESS", run_key.encode())
    return report


def trace_reports(root: DataRoot, output: str) -> list[dict[str, Any]]:
    """The reports of the stage runs that made `output` (a stage folder or its kept/), newest first,
    followed back through each run's single input; a summary of each (no configs, no paths)."""
    reports, folder = [], output.removesuffix("/kept")
    while root.exists(f"{folder}/_report.json"):
        report = root.read_json(f"{folder}/_report.json")
        reports.append(
            {k: report.get(k) for k in ("stage", "run_key", "rows_in", "kept", "dropped_by_reason", "counters")}
        )
        inputs = report.get("inputs") or []
        if len(inputs) != 1:
            break
        folder = inputs[0].removesuffix("/kept")
    return reports

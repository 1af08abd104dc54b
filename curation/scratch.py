"""Where a curate run keeps what one round hands the next: in this process's memory, or as Parquet under the
data root that any worker can read (the Scratch protocol, its two kinds, and their table encodings)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from corpus.stages import Shard, read_shard
from corpus.store import DataRoot
from curation.known import DECISION_SCHEMA, read_known_slice, slice_of_partition
from curation.partitions import Settlement

ROLES = ("exact", "bands", "images", "fetch", "known_bands")


class Scratch(Protocol):
    """Where a curate run reads its input shards and keeps what one round hands the next."""

    def read_input(self, shard: Shard) -> pa.Table: ...
    def has_known(self) -> bool:
        """Whether earlier runs kept anything to compare the run's records with."""
        ...

    def get_known(self, partition: int, partitions: int) -> pa.Table:
        """The partition's slice of the keys of what earlier runs kept (known.KEYS_SCHEMA)."""
        ...

    def put_decisions(self, decisions: pa.Table) -> None: ...
    def get_decisions(self, shard: Shard | None = None) -> pa.Table:
        """The DECISION_SCHEMA rows about the shard's rows (None: every row)."""
        ...

    def put_features(self, shard: Shard, features: pa.Table) -> None: ...
    def get_features(self, shard: Shard, columns: list[str] | None = None, rows: list[int] | None = None) -> pa.Table:
        """The shard's features (only `columns`, only the rows numbered `rows`, when given)."""
        ...

    def put_keys(self, partition: int, shard: Shard, keys: dict[str, pa.Table]) -> None: ...
    def get_keys(self, partition: int) -> dict[str, pa.Table]:
        """A partition's key tables by role, every shard's rows in shard order."""
        ...

    def put_settlement(self, settlement: Settlement) -> None: ...
    def get_settlement(self, shard: Shard) -> Settlement:
        """The settled reasons and clusters of the shard's rows (`known` left at 0)."""
        ...

    def put_output(self, shard: Shard, kept: pa.Table, dropped: pa.Table) -> None: ...
    def put_index_rows(self, shard: Shard, rows: pa.Table) -> None:
        """The dedup index rows of the shard's kept records (kept beside the output, not in memory)."""
        ...


def _only(features: pa.Table, columns: list[str] | None, rows: list[int] | None) -> pa.Table:
    if rows is not None:
        features = features.filter(pc.is_in(features.column("g"), pa.array(rows, pa.int64())))
    return features.select(columns) if columns is not None else features


@dataclass
class MemoryScratch:
    """One record table and every partial result in this process's memory (an in-process map only)."""

    table: pa.Table
    known: pa.Table | None = None  # known.compute_known_keys output; None: nothing kept before
    decisions: pa.Table = field(default_factory=DECISION_SCHEMA.empty_table)
    features: dict[int, pa.Table] = field(default_factory=dict)
    keys: dict[int, dict[int, dict[str, pa.Table]]] = field(default_factory=dict)
    settlement: Settlement = field(default_factory=Settlement)
    outputs: dict[int, tuple[pa.Table, pa.Table]] = field(default_factory=dict)
    index_rows: dict[int, pa.Table] = field(default_factory=dict)

    def shards(self) -> list[Shard]:
        """The table as one shard."""
        return [Shard(0, 0, (("<memory>", 0, self.table.num_rows),))]

    def read_input(self, shard: Shard) -> pa.Table:
        return self.table.slice(shard.first_row, shard.rows)

    def has_known(self) -> bool:
        return self.known is not None and self.known.num_rows > 0

    def get_known(self, partition: int, partitions: int) -> pa.Table:
        assert self.known is not None
        return slice_of_partition(self.known, partition, partitions)

    def put_decisions(self, decisions: pa.Table) -> None:
        self.decisions = decisions

    def get_decisions(self, shard: Shard | None = None) -> pa.Table:
        if shard is None:
            return self.decisions
        g = self.decisions.column("g")
        inside = pc.and_(pc.greater_equal(g, shard.first_row), pc.less(g, shard.first_row + shard.rows))
        return self.decisions.filter(inside)

    def put_features(self, shard: Shard, features: pa.Table) -> None:
        self.features[shard.number] = features

    def get_features(self, shard: Shard, columns: list[str] | None = None, rows: list[int] | None = None) -> pa.Table:
        return _only(self.features[shard.number], columns, rows)

    def put_keys(self, partition: int, shard: Shard, keys: dict[str, pa.Table]) -> None:
        self.keys.setdefault(partition, {})[shard.number] = keys

    def get_keys(self, partition: int) -> dict[str, pa.Table]:
        by_shard = [self.keys[partition][s] for s in sorted(self.keys.get(partition, {}))]
        return {role: pa.concat_tables([k[role] for k in by_shard]) for role in ROLES}

    def put_settlement(self, settlement: Settlement) -> None:
        self.settlement = settlement

    def get_settlement(self, shard: Shard) -> Settlement:
        return settlement_of_rows(self.settlement, shard.first_row, shard.first_row + shard.rows)

    def put_output(self, shard: Shard, kept: pa.Table, dropped: pa.Table) -> None:
        self.outputs[shard.number] = (kept, dropped)

    def put_index_rows(self, shard: Shard, rows: pa.Table) -> None:
        self.index_rows[shard.number] = rows

    def output(self) -> tuple[pa.Table, pa.Table]:
        """(kept, dropped) of every shard, in shard order."""
        parts = [self.outputs[s] for s in sorted(self.outputs)]
        return pa.concat_tables([p[0] for p in parts]), pa.concat_tables([p[1] for p in parts])


def pack_keys(part: dict[str, pa.Table]) -> pa.Table:
    """A partition's key tables from one shard as one table (one file, one object-store request, not three):
    the rows of each role one after another, its columns named `<role>.<column>`, the others null."""
    tables = []
    for role in ROLES:
        table = part[role].cast(pa.schema([f.with_nullable(True) for f in part[role].schema]))
        table = table.rename_columns([f"{role}.{c}" for c in table.column_names])
        tables.append(table.append_column("role", pa.array([role] * table.num_rows, pa.string())))
    return pa.concat_tables(tables, promote_options="default")


def unpack_keys(packed: pa.Table) -> dict[str, pa.Table]:
    """The role tables of `pack_keys` output (of one shard or several concatenated)."""
    out = {}
    for role in ROLES:
        rows = packed.filter(pc.equal(packed.column("role"), role))
        columns = [c for c in packed.column_names if c.startswith(f"{role}.")]
        out[role] = rows.select(columns).rename_columns([c.removeprefix(f"{role}.") for c in columns])
    return out


SETTLEMENT_SCHEMA = pa.schema([("g", pa.int64()), ("reason", pa.string()), ("cluster", pa.string())])


def settlement_table(settlement: Settlement) -> pa.Table:
    """A settlement as SETTLEMENT_SCHEMA rows sorted by g (null reason: clustered, kept)."""
    rows = sorted(settlement.reason.keys() | settlement.cluster.keys())
    return pa.table(
        [rows, [settlement.reason.get(g) for g in rows], [settlement.cluster.get(g) for g in rows]],
        schema=SETTLEMENT_SCHEMA,
    )


def settlement_from_table(table: pa.Table) -> Settlement:
    """The inverse of `settlement_table` (of all its rows or some)."""
    rows = table.to_pydict()
    decided = list(zip(rows["g"], rows["reason"], rows["cluster"], strict=True))
    return Settlement(
        reason={g: r for g, r, _ in decided if r is not None},
        cluster={g: c for g, _, c in decided if c is not None},
    )


def settlement_of_rows(settlement: Settlement, start: int, stop: int) -> Settlement:
    """The part of a settlement about rows g in [start, stop)."""
    inside = range(start, stop)
    return Settlement(
        reason={g: r for g, r in settlement.reason.items() if g in inside},
        cluster={g: c for g, c in settlement.cluster.items() if g in inside},
    )


# Beside a curate output: the dedup index rows of its kept records, one part per shard (what its commit adds).
INDEX_ROWS = "_index_rows"


@dataclass(frozen=True)
class FileScratch:
    """Input shards read from a data root; partial results as Parquet under `work`; outputs under `out`.

    Holds only names, so it pickles to any worker that can reach the data root. `keys_path` and
    `index_digest` name the keys of the dedup index state the run compares against (none: nothing known
    from earlier runs; `known.save_known_keys` wrote them).
    """

    root: DataRoot
    work: str
    out: str
    keys_path: str | None = None
    index_digest: str | None = None

    def _features_path(self, shard: int) -> str:
        return f"{self.work}/features/shard-{shard:05d}.parquet"

    def read_input(self, shard: Shard) -> pa.Table:
        return read_shard(self.root, shard)

    def has_known(self) -> bool:
        return self.keys_path is not None and self.index_digest is not None

    def get_known(self, partition: int, partitions: int) -> pa.Table:
        assert self.keys_path is not None and self.index_digest is not None
        return read_known_slice(self.root, self.keys_path, self.index_digest, partition, partitions)

    def put_decisions(self, decisions: pa.Table) -> None:
        self.root.write_table(f"{self.work}/known.parquet", decisions)

    def get_decisions(self, shard: Shard | None = None) -> pa.Table:
        path = f"{self.work}/known.parquet"
        if not self.root.exists(path):
            return DECISION_SCHEMA.empty_table()
        inside = None if shard is None else [("g", ">=", shard.first_row), ("g", "<", shard.first_row + shard.rows)]
        return pq.read_table(self.root.path(path), filesystem=self.root.fs, filters=inside).cast(DECISION_SCHEMA)

    def put_features(self, shard: Shard, features: pa.Table) -> None:
        self.root.write_table(self._features_path(shard.number), features, row_group_size=256)

    def get_features(self, shard: Shard, columns: list[str] | None = None, rows: list[int] | None = None) -> pa.Table:
        filters = [("g", "in", rows)] if rows is not None else None
        path = self.root.path(self._features_path(shard.number))
        return pq.read_table(path, filesystem=self.root.fs, columns=columns, filters=filters)

    def put_keys(self, partition: int, shard: Shard, keys: dict[str, pa.Table]) -> None:
        self.root.write_table(
            f"{self.work}/partition-{partition:05d}/shard-{shard.number:05d}.parquet", pack_keys(keys)
        )

    def get_keys(self, partition: int) -> dict[str, pa.Table]:
        files = self.root.list(f"{self.work}/partition-{partition:05d}", ".parquet")
        return unpack_keys(pa.concat_tables([pq.read_table(self.root.path(f), filesystem=self.root.fs) for f in files]))

    def put_settlement(self, settlement: Settlement) -> None:
        self.root.write_table(f"{self.work}/settlement.parquet", settlement_table(settlement))

    def get_settlement(self, shard: Shard) -> Settlement:
        path = self.root.path(f"{self.work}/settlement.parquet")
        inside = [("g", ">=", shard.first_row), ("g", "<", shard.first_row + shard.rows)]
        return settlement_from_table(pq.read_table(path, filesystem=self.root.fs, filters=inside))

    def put_output(self, shard: Shard, kept: pa.Table, dropped: pa.Table) -> None:
        self.root.write_table(f"{self.out}/kept/part-{shard.number:04d}.parquet", kept)
        self.root.write_table(f"{self.out}/dropped/part-{shard.number:04d}.parquet", dropped)

    def put_index_rows(self, shard: Shard, rows: pa.Table) -> None:
        self.root.write_table(f"{self.out}/{INDEX_ROWS}/part-{shard.number:04d}.parquet", rows)

    def clear(self) -> None:
        """Remove the partial results (once the output is complete)."""
        if self.root.exists(self.work):
            self.root.fs.rm(self.root.path(self.work), recursive=True)

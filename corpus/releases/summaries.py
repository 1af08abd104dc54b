"""Release summaries: what changed since the parent, and the label and curation statistics of released rows."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import pyarrow as pa


def compute_diff(new: pa.Table, parent: pa.Table | None) -> dict[str, Any]:
    """What changed from `parent` to `new` (both with record_id, label, split).

    Returns {"added", "removed", "relabelled", "moved"} counts, "by_label" ({label: {"added", "removed",
    "relabelled_in", "relabelled_out"}}) and "relabel_pairs" ({"old -> new": count}).
    """
    ids = new.column("record_id").to_pylist()
    labels = new.column("label").to_pylist()
    splits = new.column("split").to_pylist()
    by_label: dict[str, Counter] = defaultdict(Counter)
    if parent is None:
        for lab in labels:
            by_label[lab]["added"] += 1
        return {
            "added": new.num_rows,
            "removed": 0,
            "relabelled": 0,
            "moved": 0,
            "by_label": {k: dict(v) for k, v in sorted(by_label.items())},
            "relabel_pairs": {},
        }
    p_ids = parent.column("record_id").to_pylist()
    old = dict(zip(p_ids, parent.column("label").to_pylist(), strict=True))
    old_split = dict(zip(p_ids, parent.column("split").to_pylist(), strict=True))
    pairs: Counter = Counter()
    added = relabelled = moved = 0
    for rid, lab, split in zip(ids, labels, splits, strict=True):
        if rid not in old:
            added += 1
            by_label[lab]["added"] += 1
            continue
        if old[rid] != lab:
            relabelled += 1
            pairs[f"{old[rid]} -> {lab}"] += 1
            by_label[lab]["relabelled_in"] += 1
            by_label[old[rid]]["relabelled_out"] += 1
        if old_split[rid] != split:
            moved += 1
    gone = set(old) - set(ids)
    for rid in gone:
        by_label[old[rid]]["removed"] += 1
    return {
        "added": added,
        "removed": len(gone),
        "relabelled": relabelled,
        "moved": moved,
        "by_label": {k: dict(v) for k, v in sorted(by_label.items())},
        "relabel_pairs": dict(sorted(pairs.items())),
    }


def _histogram(values: list[float], bins: int = 10) -> list[int]:
    """Counts of `values` in `bins` equal bins over [0, 1] (1.0 goes to the last bin)."""
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, max(0, int(v * bins)))] += 1
    return counts


def summarize_labels(table: pa.Table) -> dict[str, Any]:
    """Label provenance of released rows: source mix, vote agreement and a label_confidence histogram.

    `label_confidence` is the winning label's vote share (or a model's probability): low = doubtful label.
    "agreement" covers rows with 2+ annotators: "unanimous_share" in [0, 1] (low = annotators disagree)
    and "mean_vote_share".
    """
    sources = Counter("unknown" if s is None else s for s in table.column("label_source").to_pylist())
    n = table.num_rows
    conf = [float(c) for c in table.column("label_confidence").to_pylist() if c is not None]
    multi = [
        (float(c) if c is not None else None)
        for c, a in zip(
            table.column("label_confidence").to_pylist(), table.column("annotators").to_pylist(), strict=True
        )
        if a is not None and len(a) >= 2
    ]
    multi_known = [c for c in multi if c is not None]
    return {
        "label_sources": dict(sorted(sources.items())),
        "label_source_share": {k: round(v / n, 4) for k, v in sorted(sources.items())} if n else {},
        "agreement": {
            "multi_annotated": len(multi),
            "unanimous_share": (sum(c >= 1.0 for c in multi_known) / len(multi_known)) if multi_known else None,
            "mean_vote_share": (sum(multi_known) / len(multi_known)) if multi_known else None,
        },
        "confidence_histogram": {"bins": 10, "range": [0.0, 1.0], "counts": _histogram(conf), "missing": n - len(conf)},
    }


def summarize_curation(table: pa.Table) -> dict[str, Any]:
    """Curation and privacy statistics of released rows: kinds, sources, near-duplicate clusters, pages with
    several images, PII found per entity type, faces blurred, EXIF stripped, scrub versions."""
    kinds = Counter(table.column("kind").to_pylist())
    sources = Counter("unknown" if s is None else s for s in table.column("source").to_pylist())
    clusters = Counter(c for c in table.column("near_dup_cluster").to_pylist() if c)
    page_kind = zip(table.column("page_url").to_pylist(), table.column("kind").to_pylist(), strict=True)
    pages = Counter(p for p, k in page_kind if p and k == "image")
    pii: Counter = Counter()
    rows_with_pii = 0
    for entry in table.column("pii_counts").to_pylist():
        if not entry:
            continue
        found = {k: v for k, v in entry if v}
        rows_with_pii += bool(found)
        pii.update(found)
    faces = [f for f in table.column("faces_blurred").to_pylist() if f is not None]
    exif = table.column("exif_stripped").to_pylist()
    return {
        "kinds": dict(sorted(kinds.items())),
        "sources": dict(sorted(sources.items())),
        "near_dup_clusters": len(clusters),
        "rows_in_near_dup_clusters": sum(clusters.values()),
        "pages_with_several_images": sum(1 for n in pages.values() if n > 1),
        "rows_on_shared_pages": sum(n for n in pages.values() if n > 1),
        "pii_entities": dict(sorted(pii.items())),
        "rows_with_pii_found": rows_with_pii,
        "faces_blurred": sum(faces),
        "rows_with_faces_blurred": sum(1 for f in faces if f > 0),
        "exif_stripped": sum(1 for e in exif if e),
        "scrub_versions": sorted({v for v in table.column("scrub_version").to_pylist() if v}),
    }

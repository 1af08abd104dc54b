"""Text near-dup benchmark: Flywheel's MinHash LSH vs datatrove's MinHash pipeline and datasketch, same corpus.

Run: `make bench-text-dedup` (QUICK=1 for 4k documents; `--sides flywheel,datatrove` for fewer sides). Each
side runs in its own process, so its peak memory is its own, on the same generated corpus (100k pages, 10%
planted near-duplicates). Flywheel streams the corpus from Parquet in batches of BATCH_ROWS rows, in two
settings: `flywheel` (14 x 8 bands, as datatrove) and `flywheel-verify` (20 x 5 bands, candidates confirmed
by estimated Jaccard >= 0.7). The parent scores pairwise precision/recall against the plant, and recall on
the planted pairs of shingle Jaccard >= 0.8 (`f1_j80`), and prints one `bench text-dedup:` line; ratio =
Flywheel docs/s over datatrove's.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpora import emit, is_quick, make_text_corpus, pair_scores, peak_rss_mb, spawn_side

# Same parameters on every side: 5-gram word shingles, 14 bands x 8 rows (datatrove's MinhashConfig defaults).
NGRAM, BANDS, ROWS = 5, 14, 8
SIDES = ("flywheel", "flywheel-verify", "datatrove", "datasketch")
# Rows per Parquet row group and per batch Flywheel reads: ~3 MB of text at this corpus's ~1.5 kB per page,
# so the texts alive at once are a few MB whatever the corpus size (a row group is the unit Parquet decodes).
BATCH_ROWS = 2_000
# The pairs the higher-recall goal is about: planted pairs whose 5-gram shingle sets have Jaccard >= 0.8.
GOAL_JACCARD = 0.8


def _run_flywheel(work: Path, side: str, verify: bool) -> dict:
    import pyarrow.parquet as pq

    from curation.minhash import VERIFY_THRESHOLD, cluster_text_batches

    started = time.perf_counter()
    # pre_buffer=False: with pyarrow's default (True) the reader keeps every column chunk it has read, so
    # "streaming" ended holding the corpus' compressed text (~100 MB here); without it one row group is alive.
    source = pq.ParquetFile(work / "corpus.parquet", pre_buffer=False)
    batches = (b.column(0).to_pylist() for b in source.iter_batches(batch_size=BATCH_ROWS, columns=["text"]))
    roots = cluster_text_batches(batches, NGRAM, verify_threshold=VERIFY_THRESHOLD if verify else None)
    seconds = time.perf_counter() - started
    np.save(work / f"labels-{side}.npy", roots)
    return {"seconds": seconds, "docs": int(roots.size)}


def run_flywheel(work: Path) -> dict:
    return _run_flywheel(work, "flywheel", verify=False)


def run_flywheel_verify(work: Path) -> dict:
    return _run_flywheel(work, "flywheel-verify", verify=True)


def run_datatrove(work: Path) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import JsonlReader

    cfg = MinhashConfig(n_grams=NGRAM, num_buckets=BANDS, hashes_per_bucket=ROWS)  # 64-bit xxhash by default
    out = work / "datatrove"
    shards = sorted((work / "jsonl").glob("*.jsonl"))
    started = time.perf_counter()
    # Its documented local recipe: signatures per shard, then buckets, then one clustering task; 2 workers = 2 cores.
    LocalPipelineExecutor(
        pipeline=[JsonlReader(str(work / "jsonl")), MinhashDedupSignature(output_folder=str(out / "sigs"), config=cfg)],
        tasks=len(shards),
        workers=2,
        logging_dir=str(out / "logs-sigs"),
    ).run()
    LocalPipelineExecutor(
        pipeline=[MinhashDedupBuckets(input_folder=str(out / "sigs"), output_folder=str(out / "buckets"), config=cfg)],
        tasks=BANDS,
        workers=2,
        logging_dir=str(out / "logs-buckets"),
    ).run()
    LocalPipelineExecutor(
        pipeline=[
            MinhashDedupCluster(
                input_folder=str(out / "buckets"), output_folder=str(out / "clusters"), config=cfg, save_cluster_id=True
            )
        ],
        tasks=1,
        logging_dir=str(out / "logs-cluster"),
    ).run()
    seconds = time.perf_counter() - started
    sizes = [shard.read_bytes().count(b"\n") for shard in shards]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    labels = np.arange(sum(sizes), dtype=np.int64)
    for path in (out / "clusters").glob("*.clusters"):
        pairs = np.frombuffer(path.read_bytes(), dtype="<u4").reshape(-1, 2)
        labels[starts[int(path.stem)] + pairs[:, 0].astype(np.int64)] = sum(sizes) + pairs[:, 1].astype(np.int64)
    np.save(work / "labels-datatrove.npy", labels)
    return {"seconds": seconds, "docs": int(sum(sizes))}


def run_datasketch(work: Path) -> dict:
    import pyarrow.parquet as pq
    from datasketch import MinHash, MinHashLSH

    texts = pq.read_table(work / "corpus.parquet").column("text").to_pylist()
    started = time.perf_counter()
    lsh = MinHashLSH(num_perm=BANDS * ROWS, params=(BANDS, ROWS))
    shingle_sets = []
    for text in texts:
        words = re.findall(r"\w+", text.lower())  # punctuation dropped, as datatrove's and Flywheel's shingling do
        grams = [" ".join(words[i : i + NGRAM]) for i in range(max(len(words) - NGRAM + 1, 1))]
        shingle_sets.append([g.encode("utf-8") for g in grams])
    minhashes = MinHash.bulk(shingle_sets, num_perm=BANDS * ROWS, seed=1)
    with lsh.insertion_session() as session:
        for key, minhash in enumerate(minhashes):
            session.insert(key, minhash, check_duplication=False)
    parent = list(range(len(texts)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for key, minhash in enumerate(minhashes):
        for other in lsh.query(minhash):
            a, b = find(key), find(other)
            if a != b:
                parent[max(a, b)] = min(a, b)
    labels = np.array([find(k) for k in range(len(texts))], dtype=np.int64)
    seconds = time.perf_counter() - started
    np.save(work / "labels-datasketch.npy", labels)
    return {"seconds": seconds, "docs": len(texts)}


def run_side(side: str, work: Path) -> None:
    runs = {
        "flywheel": run_flywheel,
        "flywheel-verify": run_flywheel_verify,
        "datatrove": run_datatrove,
        "datasketch": run_datasketch,
    }
    result = runs[side](work)
    result["peak_mb"] = peak_rss_mb()
    emit(result)


def planted_pairs(texts: list[str], truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every planted pair (P, 2) (two documents with one truth label) and the Jaccard (P,) of their shingle sets
    (Flywheel's 5-gram shingles: punctuation and case dropped, as datatrove's word shingles drop them)."""
    from curation.minhash import hash_shingles

    hashes, offsets = hash_shingles(texts, NGRAM)
    order = np.argsort(truth, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(truth[order])) + 1)
    pairs = [(int(g[i]), int(g[j])) for g in groups if g.size > 1 for i in range(g.size) for j in range(i + 1, g.size)]
    jaccard = np.zeros(len(pairs))
    for k, (a, b) in enumerate(pairs):
        sa, sb = np.unique(hashes[offsets[a] : offsets[a + 1]]), np.unique(hashes[offsets[b] : offsets[b + 1]])
        both = np.intersect1d(sa, sb, assume_unique=True).size
        jaccard[k] = both / (sa.size + sb.size - both)
    return np.array(pairs, dtype=np.int64).reshape(-1, 2), jaccard


def goal_scores(labels: np.ndarray, pairs: np.ndarray, jaccard: np.ndarray, precision: float) -> dict[str, float]:
    """Recall on the planted pairs of Jaccard >= GOAL_JACCARD, and F1 of it with the pairwise precision (a found
    pair counts as right when it is planted, whatever its Jaccard)."""
    goal = pairs[jaccard >= GOAL_JACCARD]
    recall = float((labels[goal[:, 0]] == labels[goal[:, 1]]).mean()) if goal.size else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"recall_j80": recall, "f1_j80": f1, "pairs_j80": int(goal.shape[0])}


def prepare(work: Path, n_docs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    corpus = make_text_corpus(n_docs, seed=0)
    # Row groups of BATCH_ROWS: Parquet decodes a whole row group, so this is what bounds a streaming reader.
    pq.write_table(pa.table({"text": corpus.texts}), work / "corpus.parquet", row_group_size=BATCH_ROWS)
    (work / "jsonl").mkdir()
    half = n_docs // 2
    for k, part in enumerate((corpus.texts[:half], corpus.texts[half:])):
        with open(work / "jsonl" / f"{k:02d}.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(part))
    return (corpus.truth, *planted_pairs(corpus.texts, corpus.truth))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--side", choices=SIDES)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--docs", type=int, default=None)
    parser.add_argument("--sides", default=",".join(SIDES), help="comma-separated, of: " + ", ".join(SIDES))
    args = parser.parse_args()
    if args.side:
        run_side(args.side, args.work)
        return
    n_docs = args.docs or (4_000 if is_quick() else 100_000)
    work = Path(tempfile.mkdtemp(prefix="bench-text-dedup-"))
    try:
        truth, pairs, jaccard = prepare(work, n_docs)
        rows = {}
        for side in [x for x in SIDES if x in args.sides.split(",")]:
            result = spawn_side(__file__, side, work)
            if result is None:
                continue
            labels = np.load(work / f"labels-{side}.npy")
            result.update(pair_scores(labels, truth))
            result.update(goal_scores(labels, pairs, jaccard, result["precision"]))
            result["docs_per_s"] = result["docs"] / result["seconds"]
            rows[side] = result
        n_goal = int((jaccard >= GOAL_JACCARD).sum())
        print(
            f"text near-dup: {n_docs} docs, 5-gram shingles, {int(truth.size)} planted labels, {len(pairs)} planted "
            f"pairs ({n_goal} of Jaccard >= {GOAL_JACCARD}); flywheel reads Parquet in batches of {BATCH_ROWS} rows"
        )
        header = f"{'side':<16}{'docs/s':>9}{'seconds':>9}{'peak MB':>9}{'precision':>11}{'recall':>8}{'F1':>7}"
        print(header + f"{'recall J>=0.8':>15}{'F1 J>=0.8':>11}")
        for side, r in rows.items():
            print(
                f"{side:<16}{r['docs_per_s']:>9.0f}{r['seconds']:>9.1f}{r['peak_mb']:>9.0f}"
                f"{r['precision']:>11.3f}{r['recall']:>8.3f}{r['f1']:>7.3f}{r['recall_j80']:>15.3f}{r['f1_j80']:>11.3f}"
            )
        fw, fv, dt = rows.get("flywheel"), rows.get("flywheel-verify"), rows.get("datatrove")
        if fw is None:
            raise SystemExit("flywheel side failed")
        ratio = fw["docs_per_s"] / dt["docs_per_s"] if dt else float("nan")
        peer = (
            f"datatrove_docs_per_s={dt['docs_per_s']:.0f} datatrove_f1={dt['f1']:.3f} "
            f"datatrove_f1_j80={dt['f1_j80']:.3f} datatrove_peak_mb={dt['peak_mb']:.0f} "
            if dt
            else ""
        )
        verify = (
            f"verify_docs_per_s={fv['docs_per_s']:.0f} verify_f1={fv['f1']:.3f} verify_f1_j80={fv['f1_j80']:.3f} "
            f"verify_peak_mb={fv['peak_mb']:.0f} "
            if fv
            else ""
        )
        if fv and dt:
            verify += f"verify_ratio={fv['docs_per_s'] / dt['docs_per_s']:.2f} "
        print(
            f"bench text-dedup: docs={n_docs} docs_per_s={fw['docs_per_s']:.0f} f1={fw['f1']:.3f} "
            f"f1_j80={fw['f1_j80']:.3f} flywheel_peak_mb={fw['peak_mb']:.0f} {verify}{peer}ratio={ratio:.2f}"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Text near-dup benchmark: Flywheel's MinHash LSH vs datatrove's MinHash pipeline and datasketch, same corpus.

Run: `make bench-text-dedup` (QUICK=1 for 4k documents). Each side runs in its own process on the same
generated corpus (100k pages, 10% planted near-duplicates); the parent scores pairwise precision/recall
against the plant and prints one `bench text-dedup:` line; ratio = Flywheel docs/s over datatrove's.
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
SIDES = ("flywheel", "datatrove", "datasketch")


def run_flywheel(work: Path) -> dict:
    import pyarrow.parquet as pq

    from curation.minhash import cluster_bands, compute_text_bands

    started = time.perf_counter()
    texts = pq.read_table(work / "corpus.parquet").column("text").to_pylist()
    roots = cluster_bands(compute_text_bands(texts, NGRAM, BANDS, ROWS))
    seconds = time.perf_counter() - started
    np.save(work / "labels-flywheel.npy", roots)
    return {"seconds": seconds, "docs": len(texts)}


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
    result = {"flywheel": run_flywheel, "datatrove": run_datatrove, "datasketch": run_datasketch}[side](work)
    result["peak_mb"] = peak_rss_mb()
    emit(result)


def prepare(work: Path, n_docs: int) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.parquet as pq

    corpus = make_text_corpus(n_docs, seed=0)
    pq.write_table(pa.table({"text": corpus.texts}), work / "corpus.parquet")
    (work / "jsonl").mkdir()
    half = n_docs // 2
    for k, part in enumerate((corpus.texts[:half], corpus.texts[half:])):
        with open(work / "jsonl" / f"{k:02d}.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(part))
    return corpus.truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--side", choices=SIDES)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--docs", type=int, default=None)
    args = parser.parse_args()
    if args.side:
        run_side(args.side, args.work)
        return
    n_docs = args.docs or (4_000 if is_quick() else 100_000)
    work = Path(tempfile.mkdtemp(prefix="bench-text-dedup-"))
    try:
        truth = prepare(work, n_docs)
        rows = {}
        for side in SIDES:
            result = spawn_side(__file__, side, work)
            if result is None:
                continue
            result.update(pair_scores(np.load(work / f"labels-{side}.npy"), truth))
            result["docs_per_s"] = result["docs"] / result["seconds"]
            rows[side] = result
        print(f"text near-dup: {n_docs} docs, 5-gram shingles, 14 bands x 8 rows, {int(truth.size)} planted labels")
        print(f"{'side':<11}{'docs/s':>10}{'seconds':>9}{'peak MB':>9}{'precision':>11}{'recall':>8}{'F1':>7}")
        for side, r in rows.items():
            print(
                f"{side:<11}{r['docs_per_s']:>10.0f}{r['seconds']:>9.1f}{r['peak_mb']:>9.0f}"
                f"{r['precision']:>11.3f}{r['recall']:>8.3f}{r['f1']:>7.3f}"
            )
        fw, dt = rows.get("flywheel"), rows.get("datatrove")
        if fw is None:
            raise SystemExit("flywheel side failed")
        ratio = fw["docs_per_s"] / dt["docs_per_s"] if dt else float("nan")
        peer = f"datatrove_docs_per_s={dt['docs_per_s']:.0f} datatrove_f1={dt['f1']:.3f} " if dt else ""
        print(
            f"bench text-dedup: docs={n_docs} docs_per_s={fw['docs_per_s']:.0f} f1={fw['f1']:.3f} "
            f"peak_mb={fw['peak_mb']:.0f} {peer}ratio={ratio:.2f}"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

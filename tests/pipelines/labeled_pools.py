"""Synthetic labeled pools for pipeline tests that need a release without a crawl."""

from __future__ import annotations


def make_labeled_pool(
    root, classes=("red", "green", "blue", "gray"), per_class: int = 12, seed: int = 0, annotated: bool = True
):
    """A pool of distinct synthetic images whose colour is their class, with one annotation each.

    Returns the pool folder (relative to `root`). Used where a test needs a release without a crawl;
    `annotated=False` writes the pool alone (a round's test labels it through Label Studio).
    """
    import io
    from datetime import UTC, datetime

    import numpy as np
    import pyarrow as pa
    from PIL import Image

    from corpus.schema import ANNOTATION_SCHEMA, conform, make_record_id

    colours = {"red": (200, 30, 30), "green": (30, 180, 40), "blue": (30, 40, 200), "gray": (128, 128, 128)}
    rng = np.random.default_rng(seed)
    rows, annotations = [], []
    for label in classes:
        for i in range(per_class):
            pixels = np.clip(rng.normal(colours[label], 25, size=(48, 48, 3)), 0, 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(pixels).save(buf, format="PNG")
            data = buf.getvalue()
            rid = make_record_id(data)
            rows.append(
                {
                    "record_id": rid,
                    "kind": "image",
                    "url": f"http://127.0.0.1/{label}/{i}.png",
                    "image": data,
                    "width": 48,
                    "height": 48,
                    "mime": "image/png",
                    "near_dup_cluster": rid,
                }
            )
            now = datetime.now(UTC)
            annotations.append(
                {
                    "annotation_id": len(annotations) + 1,
                    "task_id": len(annotations) + 1,
                    "project_id": 1,
                    "record_id": rid,
                    "label": label,
                    "annotator": "1",
                    "created_at": now,
                    "updated_at": now,
                    "lead_time": 1.0,
                    "was_cancelled": False,
                    "deleted": False,
                    "pulled_at": now,
                }
            )
    root.write_table("curated/scrub-test/kept/part-0000.parquet", conform(pa.Table.from_pylist(rows)))
    if annotated:
        root.write_table("annotations/part-test.parquet", pa.Table.from_pylist(annotations, schema=ANNOTATION_SCHEMA))
    return "curated/scrub-test/kept"

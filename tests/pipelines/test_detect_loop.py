"""The detect loop's model half on a real Prefect server: the train flow sends a detect release to the detector,
publishes its mAP report as the artifact, scores the pool with boxes; the next batch is the doubtful images and
its tasks carry the predicted rectangles."""

from __future__ import annotations

import asyncio

import numpy as np
import pyarrow as pa

from corpus.releases.build import build_release
from corpus.releases.config import ReleaseConfig
from corpus.store import DataRoot
from labeling.box_selection import DEFAULT_BOX_UNCERTAINTY, get_box_uncertainty_scores
from labeling.preannotations import merge_preannotations
from labeling.rounds import plan_next_batch
from labeling.studio_tasks import build_tasks, export_media
from pipelines.config import TrainParams
from pipelines.train import train_flow
from tests.pipelines.test_train_flow import _artifact
from tests.training.box_shapes import make_box_records
from training.config import TrainConfig
from training.registry import read_predictions


def _unlabeled(records: pa.Table) -> pa.Table:
    """The records as a pool holds them: no label, no boxes."""
    for name in ("label", "boxes", "label_source", "label_confidence", "annotators"):
        field = records.schema.field(name)
        records = records.set_column(
            records.schema.get_field_index(name), field, pa.nulls(records.num_rows, field.type)
        )
    return records


def test_a_detect_release_trains_a_detector_whose_boxes_choose_and_prefill_the_next_batch(prefect_api, tmp_path):
    root = DataRoot(str(tmp_path / "data"))
    build_release(root, "shapes", make_box_records(32, seed=5), ReleaseConfig(task="detect"))
    pool = _unlabeled(make_box_records(12, seed=11))
    root.write_table("pool/p1/part-0.parquet", pool)
    cfg = TrainConfig(epochs=8, batch_size=8, width=16, patience=8)
    out = train_flow(TrainParams(dataset="shapes", pool="pool/p1", train=cfg, data_root=root.url))

    model_version = out["model_version"]
    assert out["task"] == "detect" and out["scored"] == 12 and out["label_issues"] == 0
    assert out["test_map_50"] is not None and out["test_map_50_95"] is not None
    (artifact,) = asyncio.run(_artifact("model-shapes"))
    assert artifact.data == root.read_bytes(f"models/{model_version}/report.md").decode()
    assert "test mAP@0.5" in artifact.description and "| test mAP@[.5:.95] |" in artifact.data

    predictions = read_predictions(root, model_version)
    assert predictions.num_rows == 12 and all(b is not None for b in predictions.column("boxes").to_pylist())
    assert sum(len(b) for b in predictions.column("boxes").to_pylist()) > 0
    ids = predictions.column("record_id").to_pylist()
    scores = [[b["score"] for b in boxes] for boxes in predictions.column("boxes").to_pylist()]
    uncertainty = dict(zip(ids, get_box_uncertainty_scores(scores, DEFAULT_BOX_UNCERTAINTY), strict=True))
    ranked = sorted(ids, key=lambda rid: -uncertainty[rid])

    plan = plan_next_batch(
        pool, set(), {}, budget=3, predictions=predictions, model_version=model_version, task="detect"
    )
    assert plan.strategy == "distinct" and plan.model_version == model_version and len(plan.record_ids) == 3
    assert plan.record_ids[0] == ranked[0]  # the most doubtful image first
    assert set(plan.record_ids) <= set(ranked[:9])  # the rest among the 3 x budget most doubtful
    assert np.allclose([plan.priorities[r] for r in plan.record_ids], [uncertainty[r] for r in plan.record_ids])

    chosen = predictions.filter(pa.compute.is_in(predictions.column("record_id"), pa.array(plan.record_ids)))
    prefill = merge_preannotations(chosen, model_version, None, labels=["disc", "square"])
    batch = pool.filter(pa.compute.is_in(pool.column("record_id"), pa.array(plan.record_ids)))
    tasks = build_tasks(
        batch,
        export_media(root, batch),
        priorities=plan.priorities,
        predictions=prefill,
        labels=["disc", "square"],
        model_version=model_version,
        task="detect",
    )
    assert len(tasks) == 3
    confidence = dict(zip(ids, predictions.column("confidence").to_pylist(), strict=True))
    for task in tasks:
        (prediction,) = task["predictions"]
        assert prediction["model_version"] == model_version
        assert prediction["score"] == confidence[task["data"]["record_id"]]
        for region in prediction["result"]:
            assert region["type"] == "rectanglelabels" and region["score"] >= 0.3
            assert region["value"]["rectanglelabels"][0] in ("disc", "square")
            assert region["value"]["x"] >= 0 and region["value"]["x"] + region["value"]["width"] <= 100 + 1e-6

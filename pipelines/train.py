"""Training flows: train on a release, score the pool for the next round, check the stopping rule, announce."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from corpus.releases.versions import release_task
from corpus.tasks import RECORD_KIND, task_of
from labeling.label_errors import find_pool_label_issues
from labeling.multilabel import aggregate_multilabel, attach_label_sets
from labeling.multilabel_quality import flag_label_set_errors
from labeling.stopping import STOPPING_DIR, update_stopping
from labeling.sync import read_annotations
from pipelines.config import TrainParams
from pipelines.runtime import MODEL_TRAINED, announce, artifact_key, data_root_url, open_root, task
from training.config import TrainConfig
from training.detector_predict import predict_box_pool
from training.detector_train import train_detector
from training.eval_report import describe_eval_figure, describe_test_figures
from training.launch import train_distributed
from training.predict import predict_pool
from training.registry import REPORT_FILE, model_path, read_metadata, read_predictions, write_label_issues
from training.text_train import train_text_model
from training.train import train_model


@task
def train_on_release(data_root: str, dataset: str, version: str, cfg: TrainConfig) -> dict[str, Any]:
    """Train a model on a verified release (GPU when present; `cfg.devices` > 1: DDP under torchrun) and
    register it under models/; each epoch's loss and val accuracy go to the run's log as it ends; the model
    report (report.md beside the model) is published as the artifact `model-<dataset>`."""
    logger = get_run_logger()

    def log_epoch(record: dict[str, Any]) -> None:
        val = record.get("val_accuracy", record.get("val_map_50_95"))
        logger.info(
            "epoch %d/%d: train loss %.4f, val %s %s (%.1f s)",
            record["epoch"],
            cfg.epochs,
            record["train_loss"],
            "accuracy" if "val_accuracy" in record else "mAP@[.5:.95]",
            "-" if val is None else f"{val:.3f}",
            record.get("seconds", 0.0),
        )

    root = open_root(data_root)
    task_type = release_task(root, dataset, version)
    if task_type == "text":
        metrics = train_text_model(root, dataset, version, cfg, on_epoch=log_epoch)
    elif task_type == "detect":
        metrics = train_detector(root, dataset, version, cfg, on_epoch=log_epoch)
    elif cfg.devices > 1:
        logger.info("training on %d processes under torchrun (DDP)", cfg.devices)
        metrics = train_distributed(root.url, dataset, version, cfg, on_line=logger.info)
    else:
        metrics = train_model(root, dataset, version, cfg, on_epoch=log_epoch)
    create_markdown_artifact(
        key=artifact_key("model", dataset),
        markdown=root.read_bytes(model_path(metrics["model_version"], REPORT_FILE)).decode(),
        description=f"{metrics['model_version']}: {describe_test_figures(metrics)}, " + describe_eval_figure(metrics),
    )
    return metrics


@task
def score_pool(data_root: str, model_version: str, pool: str) -> dict[str, Any]:
    """Write the model's predictions and embeddings over the pool for the next round, flag likely label
    errors (confident learning) and update the stopping rule's state against the previous model."""
    root = open_root(data_root)
    metrics = read_metadata(root, model_version)
    records = root.read_table(pool)
    if metrics.get("task") == "detect":
        predictions = predict_box_pool(root, model_version, records)
        issues, why_not = None, "confident learning is for classify; box errors: labeling.box_quality"
    elif metrics.get("task") == "multilabel":
        predictions = predict_pool(root, model_version, records)
        labeled = attach_label_sets(records, aggregate_multilabel(read_annotations(root)))
        issues, why_not = flag_label_set_errors(labeled, predictions, metrics["labels"])
    else:
        predictions = predict_pool(root, model_version, records)
        issues, why_not = find_pool_label_issues(records, read_annotations(root), predictions, metrics["labels"])
    if issues is None:
        get_run_logger().info("no label-error check for %s: %s", model_version, why_not)
    else:
        write_label_issues(root, model_version, issues)
    state_path = f"{STOPPING_DIR}/{metrics['dataset']}.json"
    state = root.read_json(state_path) if root.exists(state_path) else None
    previous = read_predictions(root, state["model_version"]) if state else None
    kind = RECORD_KIND[task_of(metrics)]
    stopping = update_stopping(state, model_version, predictions, previous, records, kind=kind)
    root.write_json(state_path, stopping.state)
    return {
        "scored": predictions.num_rows,
        "label_issues": issues.num_rows if issues is not None else 0,
        "label_issue_ids": issues.column("record_id").to_pylist() if issues is not None else [],
        "stopping": stopping.result,
    }


@task
def announce_model(data_root: str, metrics: dict[str, Any], scored: dict[str, Any]) -> None:
    """Emit flywheel.model.trained: the next label round picks this model up."""
    model_version = metrics["model_version"]
    payload = {
        "model_version": model_version,
        "dataset": metrics["dataset"],
        "release": metrics.get("release"),
        "release_id": metrics.get("release_id"),
        "recipe": metrics.get("recipe"),
        "test_accuracy": metrics.get("test_accuracy"),
        "data_root": open_root(data_root).url,
        "scored": scored.get("scored", 0),
        "label_issues": scored.get("label_issues", 0),
        "stop_labeling": bool((scored.get("stopping") or {}).get("stop")),
    }
    resource = {"prefect.resource.id": f"flywheel.model.{model_version}", "prefect.resource.name": model_version}
    announce(MODEL_TRAINED, metrics["dataset"], payload, resource=resource)


@flow(name="train", log_prints=True)
def train_flow(params: TrainParams) -> dict[str, Any]:
    """Train on a release, score the unlabeled pool for the next round and emit flywheel.model.trained."""
    data_root = data_root_url(params.data_root)
    metrics = train_on_release(data_root, params.dataset, params.version, params.train)
    scored = score_pool(data_root, metrics["model_version"], params.pool) if params.pool else {}
    announce_model(data_root, metrics, scored)
    return {
        **metrics,
        "path": open_root(data_root).uri(model_path(metrics["model_version"])),
        "scored": scored.get("scored", 0),
        "label_issues": scored.get("label_issues", 0),
        "stopping": scored.get("stopping"),
    }


@flow(name="train-on-release", log_prints=True)
def train_on_release_flow(dataset: str, version: str, data_root: str | None = None, pool: str | None = None) -> dict:
    """The event-triggered entry point: the `flywheel.dataset.released` payload maps onto these parameters."""
    return train_flow(TrainParams(dataset=dataset, version=version, data_root=data_root, pool=pool))

"""Pretraining flow: a self-supervised encoder of the unlabeled pool, whose embeddings the cold start selects with."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from corpus.pool import latest_pool
from pipelines.config import PretrainParams
from pipelines.runtime import artifact_key, data_root_url, open_root, task
from training.config import SimCLRConfig
from training.encoders import encoder_path, pretrain_pool_encoder


@task
def pretrain_on_pool(data_root: str, pool: str, cfg: SimCLRConfig) -> dict[str, Any]:
    """Pretrain cfg.backbone with SimCLR on the pool's images (GPU when present), embed the pool and publish
    encoders/simclr-NNNN/; each epoch's loss goes to the run's log as it ends."""
    logger = get_run_logger()

    def log_epoch(record: dict[str, Any]) -> None:
        logger.info(
            "epoch %d/%d: NT-Xent loss %.4f (%.1f s)", record["epoch"], cfg.epochs, record["loss"], record["seconds"]
        )

    root = open_root(data_root)
    return pretrain_pool_encoder(root, root.read_table(pool), pool_path=pool, cfg=cfg, on_epoch=log_epoch)


@flow(name="pretrain", log_prints=True)
def pretrain_flow(params: PretrainParams) -> dict[str, Any]:
    """Pretrain an encoder on the unlabeled pool; the next cold-start round picks by TypiClust over its embeddings."""
    data_root = data_root_url(params.data_root)
    root = open_root(data_root)
    pool = params.pool or latest_pool(root)
    meta = pretrain_on_pool(data_root, pool, params.simclr)
    version = meta["encoder_version"]
    create_markdown_artifact(
        key=artifact_key("encoder", version),
        markdown=(
            f"# Encoder {version}\n\nSimCLR, {meta['config']['backbone']}, {meta['epochs']} epochs on "
            f"{meta['n_images']} images of `{pool}` ({meta['device_name']}, {meta['seconds']:.0f} s); NT-Xent loss "
            f"{meta['history'][0]['loss']:.3f} -> {meta['final_loss']:.3f} (chance {meta['chance_loss']:.3f})."
        ),
        description=f"{version}: pool digest {meta['pool_digest'][:12]}",
    )
    return {**meta, "path": root.uri(encoder_path(version))}

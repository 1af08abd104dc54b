"""`flywheel crawl | curate | ingest | release | train | pretrain`: each flow by hand, its inputs checked first."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError

from pipelines.cli_support import console, fail, prefect_api, print_json, print_progress

_PrivateHosts = Annotated[
    list[str] | None,
    typer.Option(
        help="An origin (http://127.0.0.1:8765) on a private or loopback address the crawl may reach; "
        "a bare host means the start URL's scheme and port. Repeat for more."
    ),
]
M = TypeVar("M", bound=BaseModel)
_Json = Annotated[bool, typer.Option("--json", help="Print the whole report as JSON instead of the summary.")]


def build_config(model: type[M], **values: Any) -> M:
    """`model(**values)`, or a one-line error naming each bad option (exit 2) before anything runs."""
    try:
        return model(**values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = "--" + "-".join(str(p) for p in error["loc"]).replace("_", "-") if error["loc"] else ""
            problems.append(f"{where} {error['msg']}".strip())
        raise fail("; ".join(problems)) from None


def _counts(counts: dict[str, int] | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted((counts or {}).items()) if v) or "none"


def crawl_summary(report: dict[str, Any]) -> str:
    """One line of what a crawl did: pages, images, refusals (robots.txt, SSRF guard, offsite), errors, where."""
    refused = sum((report.get("ssrf_refused") or {}).values())
    errors = sum((report.get("errors") or {}).values())
    unchanged = sum((report.get("unchanged") or {}).values())
    return (
        f"crawl: {report.get('pages', 0)} pages, {report.get('images', 0)} images"
        + (f", {unchanged} unchanged" if unchanged else "")
        + f"; refused: robots.txt {report.get('robots_denied', 0)}, guard {refused} "
        f"({_counts(report.get('ssrf_refused'))}), offsite {report.get('offsite_filtered', 0)}; "
        f"errors {errors} ({_counts(report.get('errors'))}) -> {report.get('output')}"
    )


def crawl(
    start_url: Annotated[str, typer.Argument(help="Where the crawl starts (http or https).")],
    source: Annotated[str, typer.Option(help="Source name stored on records.")] = "site",
    max_pages: Annotated[int, typer.Option(help="Page budget.")] = 2000,
    allowed_domain: Annotated[list[str] | None, typer.Option(help="Extra hosts the crawl may visit.")] = None,
    allow_private_host: _PrivateHosts = None,
    incremental: Annotated[bool, typer.Option(help="Fetch and write only what changed since the last crawl.")] = False,
    as_json: _Json = False,
) -> None:
    """Crawl a site into raw/<crawl run>/ under the data root (Scrapy, robots.txt obeyed, same host only).

    Private and loopback addresses are refused unless allowed. Prints pages, images, refusals and errors;
    exits 1 with the reason when it fetched nothing (the SSRF guard refused the start URL, the host did
    not answer, ...)."""
    from crawlers.config import CrawlConfig
    from pipelines.ingest import crawl_flow

    params = build_config(
        CrawlConfig,
        start_url=start_url,
        source=source,
        max_pages=max_pages,
        allowed_domains=allowed_domain,
        allowed_private_hosts=allow_private_host,
        incremental=incremental,
    )
    with prefect_api(), console.status(f"crawling {start_url} (at most {max_pages} pages)"):
        report = crawl_flow(params)
    if as_json:
        print_json(report)
    else:
        console.print(crawl_summary(report), highlight=False, soft_wrap=True)
    if report.get("nothing_fetched"):
        raise fail(f"crawl fetched nothing: {report['nothing_fetched']}", code=1)


def _stage_line(name: str, report: dict[str, Any]) -> str:
    rows_in = report.get("rows_in", report.get("kept", 0) + report.get("dropped", 0))
    return (
        f"{name}: {rows_in} rows in, {report.get('kept')} kept, {report.get('dropped')} dropped "
        f"({_counts(report.get('dropped_by_reason'))})"
    )


def curate(
    raw: Annotated[list[str], typer.Argument(help="Raw folders under the data root, e.g. raw/crawl-...")],
    shards: Annotated[
        int | None,
        typer.Option(
            help="Input shards, each curated and scrubbed as its own task. Default: sized from the input, "
            "curated one after another, so memory stays bounded."
        ),
    ] = None,
    partitions: Annotated[
        int | None, typer.Option(help="Hash partitions of the duplicate search (default: as many as shards).")
    ] = None,
    dask: Annotated[
        bool, typer.Option(help="Run the shards on Dask: FLYWHEEL_DASK_ADDRESS, else a LocalCluster.")
    ] = False,
    as_json: _Json = False,
) -> None:
    """Curate (validate, deduplicate) and scrub (PII, EXIF, faces) raw records into the label pool.

    The pool is the scrub run's kept folder, remembered as the latest pool. Prints rows in, kept and dropped
    per stage."""
    from pipelines.config import CurateParams, ScaleParams
    from pipelines.ingest import curate_flow
    from pipelines.progress import reporting_shards

    scale = build_config(ScaleParams, shards=shards, partitions=partitions, dask=dask)
    status = console.status(f"curating and scrubbing {', '.join(raw)}")
    with prefect_api(), status, reporting_shards(partial(print_progress, as_json=as_json)):
        report = curate_flow(CurateParams(inputs=raw, scale=scale))
    if as_json:
        keys = ("output", "rows_in", "kept", "dropped", "dropped_by_reason", "counters", "shards")
        print_json({k: {kk: v.get(kk) for kk in keys} if isinstance(v, dict) else v for k, v in report.items()})
        return
    for stage in ("curate", "scrub"):
        console.print(_stage_line(stage, report[stage]), highlight=False, soft_wrap=True)
    console.print(f"pool: {report['pool']}", highlight=False, soft_wrap=True)


def ingest(
    start_url: Annotated[str, typer.Argument(help="Where the crawl starts (http or https).")],
    source: Annotated[str, typer.Option(help="Source name stored on records.")] = "site",
    max_pages: Annotated[int, typer.Option(help="Page budget.")] = 2000,
    allow_private_host: _PrivateHosts = None,
) -> None:
    """crawl -> curate -> scrub in one flow: raw/<crawl run>/, then the label pool. Fails with the reason when
    the crawl fetched nothing."""
    from crawlers.config import CrawlConfig
    from pipelines.config import IngestParams
    from pipelines.ingest import ingest_flow

    crawl_params = build_config(
        CrawlConfig, start_url=start_url, source=source, max_pages=max_pages, allowed_private_hosts=allow_private_host
    )
    with prefect_api(), console.status(f"crawling {start_url}, then curating and scrubbing"):
        report = ingest_flow(IngestParams(crawl=crawl_params))
    console.print(crawl_summary(report["crawl"]), highlight=False, soft_wrap=True)
    for stage in ("curate", "scrub"):
        console.print(_stage_line(stage, report[stage]), highlight=False, soft_wrap=True)
    console.print(f"pool: {report['pool']}", highlight=False, soft_wrap=True)


def release(
    dataset: Annotated[str, typer.Option(help="Dataset name.")] = "demo",
    pool: Annotated[str | None, typer.Option(help="Pool folder; default: the latest ingest's.")] = None,
    train: Annotated[float, typer.Option("--train", help="Share of each label in train.")] = 0.7,
    val: Annotated[float, typer.Option("--val", help="Share of each label in val.")] = 0.15,
    test: Annotated[float, typer.Option("--test", help="Share of each label in test (the three sum to 1).")] = 0.15,
    trusted: Annotated[
        list[str] | None,
        typer.Option(
            help="A label origin (imported:SOURCE) taken as the label as is; default: the imports whose "
            "label policy is trusted. Repeat for more."
        ),
    ] = None,
) -> None:
    """Publish the next immutable release of DATASET (emits flywheel.dataset.released).

    In: the label pool (the latest ingest's or --pool) and the pulled annotations (annotations/), aggregated
    by Dawid-Skene (imported labels of a trusted source taken as they are). Out: releases/DATASET/vNNNN/
    under the data root: train/val/test Parquet split by the ratios, manifest.json (label sources, agreement,
    diff to the parent), card.html. Prints the release's path."""
    from corpus.pool import latest_pool
    from corpus.releases.config import ReleaseConfig
    from corpus.releases.versions import dataset_folder
    from corpus.store import open_data_root
    from pipelines.config import ReleaseParams
    from pipelines.release import release_flow

    try:
        dataset_folder(dataset)
    except ValueError as exc:
        raise fail(str(exc)) from None
    split = build_config(ReleaseConfig, train=train, val=val, test=test)
    pool = pool or latest_pool(open_data_root())  # no pool: one line, before any flow starts
    params = ReleaseParams(dataset=dataset, pool=pool, release=split, trusted_origins=trusted)
    with prefect_api(), console.status(f"releasing {dataset} from {pool}"):
        manifest = release_flow(params)
    keys = ("dataset", "version", "parent", "rows", "unchanged", "label_sources", "path")
    print_json({k: manifest.get(k) for k in keys})
    console.print(f"release: {manifest['path']}", highlight=False, soft_wrap=True)


def train(
    release: Annotated[str, typer.Option("--release", help="DATASET@VERSION, e.g. demo@v0002 or demo@latest.")],
    epochs: Annotated[int, typer.Option(help="Most training epochs (early stopping may end sooner).")] = 30,
    image_size: Annotated[int, typer.Option(help="Side of the square input, in pixels.")] = 64,
    lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate (cosine-annealed to 0).")] = 3e-3,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 32,
    backbone: Annotated[str, typer.Option(help="small-cnn, resnet18, resnet34 or resnet50.")] = "small-cnn",
    weights: Annotated[
        str | None, typer.Option(help="Pretrained weights: a path, data-root path or URL (torchvision/timm names).")
    ] = None,
    weights_sha256: Annotated[str | None, typer.Option(help="The weights' sha256 (or its first 8+ digits).")] = None,
    transfer: Annotated[str, typer.Option(help="fine-tune, freeze-stem or linear-probe.")] = "fine-tune",
    lr_schedule: Annotated[str, typer.Option(help="cosine, constant or one-cycle.")] = "cosine",
    score_pool: Annotated[bool, typer.Option(help="Score the latest pool for the next round.")] = True,
    devices: Annotated[
        int, typer.Option(min=1, help="Processes under torchrun DDP, one GPU each (gloo on CPU); batch is per process.")
    ] = 1,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Train a model on a release (CUDA when present) and score the pool for the next label round.

    In: release DATASET@VERSION under releases/ (checked before anything runs). Out: models/<model version>/
    under the data root (weights, metrics.json, report.md: also the run's Prefect artifact) and, with
    --score-pool, the model's predictions over the latest pool. With --devices N, N processes train one model
    under torchrun (DDP). Logs each epoch's loss and val accuracy; prints the model's path."""
    from corpus.pool import latest_pool
    from corpus.store import open_data_root
    from pipelines.cli_export import resolve_ref
    from pipelines.config import TrainParams
    from pipelines.train import train_flow
    from training.config import TrainConfig
    from training.launch import check_devices

    root = open_data_root()
    try:
        dataset, version = resolve_ref(root, release)
    except (ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    cfg = build_config(
        TrainConfig,
        epochs=epochs,
        image_size=image_size,
        lr=lr,
        batch_size=batch_size,
        backbone=backbone,
        weights=weights,
        weights_sha256=weights_sha256,
        transfer=transfer,
        lr_schedule=lr_schedule,
        devices=devices,
        device=device,
    )
    try:
        check_devices(cfg)
    except ValueError as exc:
        raise fail(str(exc)) from None
    pool = latest_pool(root) if score_pool else None
    with prefect_api():
        metrics = train_flow(TrainParams(dataset=dataset, version=version, pool=pool, train=cfg))
    keys = ("model_version", "release", "test_accuracy", "device", "world_size", "scored", "path")
    keys += ("test_map_50", "test_map_50_95") if metrics.get("task") == "detect" else ()
    print_json({k: metrics.get(k) for k in keys} | {"eval_accuracy": (metrics.get("eval_set") or {}).get("accuracy")})
    console.print(f"model: {metrics['path']}", highlight=False, soft_wrap=True)


def pretrain(
    epochs: Annotated[int, typer.Option(help="Passes of SimCLR over the pool.")] = 30,
    image_size: Annotated[int, typer.Option(help="Side of each view, in pixels.")] = 64,
    batch_size: Annotated[int, typer.Option(help="Images per batch (two views each).")] = 256,
    backbone: Annotated[str, typer.Option(help="small-cnn, resnet18, resnet34 or resnet50.")] = "small-cnn",
    pool: Annotated[str | None, typer.Option(help="Pool folder; default: the latest ingest's.")] = None,
) -> None:
    """Pretrain an encoder on the unlabeled pool with SimCLR (CUDA when present) and embed the pool.

    In: the pool's images. Out: encoders/simclr-NNNN/ under the data root (weights, the pool's embeddings,
    encoder.json); the next cold-start label round picks by TypiClust over those embeddings. Prints its path."""
    from corpus.pool import latest_pool
    from corpus.store import open_data_root
    from pipelines.config import PretrainParams
    from pipelines.pretrain import pretrain_flow
    from training.config import SimCLRConfig

    cfg = build_config(SimCLRConfig, epochs=epochs, image_size=image_size, batch_size=batch_size, backbone=backbone)
    root = open_data_root()
    pool = pool or latest_pool(root)
    if not root.exists(pool):
        raise fail(f"pool {pool!r} not found under {root.url}")
    with prefect_api(), console.status(f"pretraining on {pool}"):
        meta = pretrain_flow(PretrainParams(pool=pool, simclr=cfg, data_root=root.url))
    keys = ("encoder_version", "n_images", "epochs", "final_loss", "device", "pool_digest", "path")
    print_json({k: meta.get(k) for k in keys})
    console.print(f"encoder: {meta['path']}", highlight=False, soft_wrap=True)

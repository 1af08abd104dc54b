"""The `flywheel` command line: the demo, each flow by hand, local services and deployments."""

from __future__ import annotations

import os
import signal
import sys
from typing import Annotated

import typer

from corpus.settings import get_settings
from pipelines.cli_export import export_command, releases_app
from pipelines.cli_import import import_command
from pipelines.cli_label import label_app
from pipelines.cli_support import console, prefect_api, print_json

app = typer.Typer(
    help="Flywheel: crawl -> curate -> scrub -> label -> release -> train.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
services_app = typer.Typer(
    help="Local services: Label Studio, the sample site, a Prefect server.", no_args_is_help=True
)
app.add_typer(label_app, name="label")
app.add_typer(releases_app, name="releases")
app.command("export")(export_command)
app.command("import")(import_command)
app.add_typer(services_app, name="services")

SUMMARY_PATH = "demo/summary.json"


_DEBUG = {"on": False}


def _exit_on_signal(signum: int, _frame: object) -> None:
    # SIGTERM's default kills the process on the spot; as an exit, atexit hooks still run, and Prefect's
    # hook stops the temporary server it started for this command.
    sys.exit(128 + signum)


@app.callback()
def _setup(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")] = False,
) -> None:
    # albumentations checks PyPI for updates at import unless told not to; nothing may leave loopback.
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    _DEBUG["on"] = debug
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)


def main() -> None:
    """The `flywheel` entry point: one clear line and a non-zero exit for any error, tracebacks with --debug."""
    try:
        app()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        sys.exit(130)
    except Exception as exc:
        if _DEBUG["on"]:
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        console.print(f"[red]error:[/] {type(exc).__name__}: {message}", highlight=False, soft_wrap=True)
        sys.exit(1)


@app.command()
def demo(
    images_per_class: Annotated[int, typer.Option(help="Images per class on the sample site.")] = 60,
    seed: Annotated[int, typer.Option(help="Seed of the sample site.")] = 7,
    rounds: Annotated[int, typer.Option(help="Label rounds (each: label, release, train).")] = 2,
    budget: Annotated[int, typer.Option(help="Tasks pushed per label round.")] = 80,
) -> None:
    """Run the whole loop on the generated sample site and print the summary (also in data/demo/summary.json).

    Starts Label Studio, the sample site, a Prefect server, registers deploy/prefect.yaml's deployments, the
    webhook bridge and a worker, and leaves them running: the rounds after the first are opened, closed,
    released and trained on by those deployments, as they would be with people labeling."""
    from corpus.store import open_data_root
    from pipelines.demo import services
    from pipelines.demo.flow import DemoParams, demo_flow
    from pipelines.demo.sample_images import CLASSES
    from pipelines.demo.summary import render_summary

    settings = get_settings()
    with console.status("starting Label Studio (first start migrates its database: about a minute)"):
        ls_url = services.start_label_studio(settings)
    console.print(f"[green]✓[/] Label Studio at {ls_url}")
    with console.status("generating and serving the sample site"):
        site_url, truth = services.start_sample_site(settings, seed=seed, images_per_class=images_per_class)
    console.print(f"[green]✓[/] sample site at {site_url}")
    with console.status("starting the Prefect server"), prefect_api(start=True) as api:
        console.print(f"[green]✓[/] Prefect UI at {api.removesuffix('/api')}")
        with console.status("registering the deployments, starting the webhook bridge and a worker"):
            bridge = services.start_flywheel(settings, api)
        get_settings.cache_clear()
        console.print(f"[green]✓[/] deployments registered, worker running, webhooks to {bridge}")
        params = DemoParams(
            site_url=site_url,
            truth_path=str(truth),
            labels=list(CLASSES),
            budgets=[budget] * rounds,
            data_root=settings.data_root,
        )
        summary = demo_flow(params)
    root = open_data_root(settings.data_root)
    root.write_json(SUMMARY_PATH, summary)
    console.print(render_summary(summary))
    console.print(f"summary: {root.uri(SUMMARY_PATH)}")
    console.print(f"releases: {root.uri(f'releases/{params.dataset}')}   models: {root.uri('models')}")
    console.print(
        f"Label Studio project: {summary['label_studio']['url']} "
        f"(login {settings.label_studio_user} / {settings.label_studio_password.get_secret_value()})"
    )
    console.print(f"Prefect UI: {api.removesuffix('/api')}/runs   stop everything: make down")


@app.command()
def crawl(
    start_url: str,
    source: Annotated[str, typer.Option(help="Source name stored on records.")] = "site",
    max_pages: Annotated[int, typer.Option(help="Page budget.")] = 2000,
    allowed_domain: Annotated[list[str] | None, typer.Option(help="Extra hosts the crawl may visit.")] = None,
    allow_private_host: Annotated[
        list[str] | None,
        typer.Option(
            help="An origin (http://127.0.0.1:8765) on a private or loopback address the crawl may reach; "
            "a bare host means the start URL's scheme and port."
        ),
    ] = None,
    incremental: Annotated[bool, typer.Option(help="Fetch and write only what changed since the last crawl.")] = False,
) -> None:
    """Crawl a site into raw/<crawl run>/ (Scrapy, robots.txt obeyed, same host only, no private addresses)."""
    from crawlers.config import CrawlConfig
    from pipelines.ingest import crawl_flow

    params = CrawlConfig(
        start_url=start_url,
        source=source,
        max_pages=max_pages,
        allowed_domains=allowed_domain,
        allowed_private_hosts=allow_private_host,
        incremental=incremental,
    )
    with prefect_api():
        print_json(crawl_flow(params))


@app.command()
def curate(
    raw: Annotated[list[str], typer.Argument(help="Raw folders under the data root, e.g. raw/crawl-...")],
    shards: Annotated[int, typer.Option(help="Input shards, each curated and scrubbed as its own task.")] = 1,
    partitions: Annotated[
        int | None, typer.Option(help="Hash partitions of the duplicate search (default: as many as shards).")
    ] = None,
    dask: Annotated[
        bool, typer.Option(help="Run the shards on Dask: FLYWHEEL_DASK_ADDRESS, else a LocalCluster.")
    ] = False,
) -> None:
    """Curate (validate, deduplicate) and scrub (PII, EXIF, faces) raw records into the label pool."""
    from pipelines.config import CurateParams, ScaleParams
    from pipelines.ingest import curate_flow

    scale = ScaleParams(shards=shards, partitions=partitions, dask=dask)
    with prefect_api():
        report = curate_flow(CurateParams(inputs=raw, scale=scale))
    print_json(
        {
            k: {kk: v.get(kk) for kk in ("output", "kept", "dropped", "dropped_by_reason", "counters", "shards")}
            if isinstance(v, dict)
            else v
            for k, v in report.items()
        }
    )


@app.command()
def ingest(
    start_url: str,
    source: Annotated[str, typer.Option(help="Source name stored on records.")] = "site",
    max_pages: Annotated[int, typer.Option(help="Page budget.")] = 2000,
    allow_private_host: Annotated[
        list[str] | None,
        typer.Option(
            help="An origin (http://127.0.0.1:8765) on a private or loopback address the crawl may reach; "
            "a bare host means the start URL's scheme and port."
        ),
    ] = None,
) -> None:
    """crawl -> curate -> scrub in one flow."""
    from crawlers.config import CrawlConfig
    from pipelines.config import IngestParams
    from pipelines.ingest import ingest_flow

    crawl_params = CrawlConfig(
        start_url=start_url, source=source, max_pages=max_pages, allowed_private_hosts=allow_private_host
    )
    with prefect_api():
        report = ingest_flow(IngestParams(crawl=crawl_params))
    print_json({"pool": report["pool"], "crawl": report["crawl"], "kept": report["curate"]["kept"]})


@app.command()
def release(
    dataset: Annotated[str, typer.Option(help="Dataset name.")] = "demo",
    pool: Annotated[str | None, typer.Option(help="Pool folder; default: the latest ingest's.")] = None,
) -> None:
    """Publish the next immutable release of DATASET from the labeled pool (emits flywheel.dataset.released)."""
    from pipelines.config import ReleaseParams
    from pipelines.release import release_flow

    with prefect_api():
        manifest = release_flow(ReleaseParams(dataset=dataset, pool=pool))
    print_json({k: manifest.get(k) for k in ("dataset", "version", "parent", "rows", "unchanged", "path")})


@app.command()
def train(
    release: Annotated[str, typer.Option("--release", help="DATASET@VERSION, e.g. demo@v0002 or demo@latest.")],
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 30,
    score_pool: Annotated[bool, typer.Option(help="Score the latest pool for the next round.")] = True,
) -> None:
    """Train a model on a release (CUDA when present) and score the pool for the next label round."""
    from corpus.pool import latest_pool
    from corpus.releases.versions import parse_release_ref
    from corpus.store import open_data_root
    from pipelines.config import TrainParams
    from pipelines.train import train_flow
    from training.config import TrainConfig

    dataset, version = parse_release_ref(release)
    pool = latest_pool(open_data_root()) if score_pool else None
    with prefect_api():
        metrics = train_flow(TrainParams(dataset=dataset, version=version, pool=pool, train=TrainConfig(epochs=epochs)))
    print_json({k: metrics.get(k) for k in ("model_version", "release", "test_accuracy", "device", "scored")})


@services_app.command("up")
def services_up(
    images_per_class: Annotated[int, typer.Option(help="Images per class on the sample site.")] = 60,
    seed: Annotated[int, typer.Option(help="Seed of the sample site.")] = 7,
) -> None:
    """Start Label Studio, the sample site and a Prefect server on 127.0.0.1 (reused when already up)."""
    from pipelines.demo import services

    settings = get_settings()
    console.print(f"Label Studio: {services.start_label_studio(settings)}")
    console.print(
        f"sample site: {services.start_sample_site(settings, seed=seed, images_per_class=images_per_class)[0]}"
    )
    console.print(f"Prefect UI: {services.start_prefect_server(settings).removesuffix('/api')}")


@services_app.command("down")
def services_down() -> None:
    """Stop every service the demo, `services up` or `ui` started."""
    from pipelines.demo import services

    for name, was_running in services.stop_all(get_settings()).items():
        console.print(f"{name}: {'stopped' if was_running else 'not running'}")


@services_app.command("status")
def services_status() -> None:
    """Which services run, and where."""
    from pipelines.demo import services

    print_json(services.describe(get_settings()))


@app.command()
def ui() -> None:
    """Start the local Prefect server, register deploy/prefect.yaml's deployments, start the webhook bridge and a
    worker, print the URL: the loop then turns by itself as people label."""
    from pipelines.demo import services

    settings = get_settings()
    with console.status("starting the Prefect server"):
        api = services.start_prefect_server(settings)
    with console.status("registering the deployments (deploy/prefect.yaml), the webhook bridge and a worker"):
        bridge = services.start_flywheel(settings, api)
    console.print(
        f"Prefect UI: {api.removesuffix('/api')}  (worker on pool {services.WORK_POOL}; Label Studio webhooks to "
        f"{bridge}; set FLYWHEEL_WEBHOOK_URL={bridge} for your own pushes; stop: make down)"
    )


if __name__ == "__main__":
    main()

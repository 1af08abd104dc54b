"""The `flywheel` command line: the demo, each flow by hand, local services and deployments."""

from __future__ import annotations

import os
import signal
import sys
from typing import Annotated

import typer

from corpus.settings import get_settings
from pipelines import cli_flows
from pipelines.cli_export import export_command, releases_app
from pipelines.cli_import import import_command
from pipelines.cli_label import label_app
from pipelines.cli_status import status_command
from pipelines.cli_support import FlywheelTyper, console, prefect_api, print_json

app = FlywheelTyper(
    help="Flywheel: crawl -> curate -> scrub -> label -> release -> train.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
services_app = FlywheelTyper(
    help="Local services: Label Studio, the sample site, a Prefect server.", no_args_is_help=True
)
app.add_typer(label_app, name="label")
app.add_typer(releases_app, name="releases")
app.command("export")(export_command)
app.command("import")(import_command)
for _flow_command in (
    cli_flows.crawl,
    cli_flows.curate,
    cli_flows.ingest,
    cli_flows.release,
    cli_flows.train,
    cli_flows.pretrain,
):
    app.command()(_flow_command)
app.command("status")(status_command)
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
    task: Annotated[
        str,
        typer.Option(
            help="Task type to label: classify (one class per image), multilabel (every class present), detect "
            "(boxes around objects) or text (one topic per text page)."
        ),
    ] = "classify",
    text_pages: Annotated[int, typer.Option(help="Article pages per topic on the sample site (--task text).")] = 60,
) -> None:
    """Run the whole loop on the generated sample site and print the summary (also in data/demo/summary.json).

    Starts Label Studio, the sample site, a Prefect server, registers deploy/prefect.yaml's deployments, the
    webhook bridge and a worker, and leaves them running: the rounds after the first are opened, closed,
    released and trained on by those deployments, as they would be with people labeling."""
    from corpus.store import open_data_root
    from pipelines.demo import services
    from pipelines.demo.flow import DEMO_TASKS, DemoParams, demo_flow
    from pipelines.demo.sample_images import CLASSES
    from pipelines.demo.sample_objects import OBJECT_CLASSES
    from pipelines.demo.sample_texts import TOPICS
    from pipelines.demo.summary import render_summary

    if task not in DEMO_TASKS:
        raise typer.BadParameter(f"--task {task!r}: the demo runs {', '.join(DEMO_TASKS)}")
    settings = get_settings()
    with console.status("starting Label Studio (first start migrates its database: about a minute)"):
        ls_url = services.start_label_studio(settings)
    console.print(f"[green]✓[/] Label Studio at {ls_url}")
    with console.status("generating and serving the sample site"):
        texts = text_pages if task == "text" else 0
        site_url, truth = services.start_sample_site(
            settings, seed=seed, images_per_class=images_per_class, task=task, text_pages_per_topic=texts
        )
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
            labels=list(TOPICS if task == "text" else OBJECT_CLASSES if task == "detect" else CLASSES),
            budgets=[budget] * rounds,
            task=task,
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

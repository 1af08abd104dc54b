"""`flywheel label ...`: open a round, see how far it is, close it, pull annotations, bridge Label Studio webhooks."""

from __future__ import annotations

from typing import Annotated

import typer

from pipelines.cli_support import FlywheelTyper, console, prefect_api, print_json

label_app = FlywheelTyper(help="Label rounds in Label Studio: push, status, close, pull, listen.", no_args_is_help=True)


def _split(labels: str) -> list[str]:
    return [x.strip() for x in labels.split(",") if x.strip()]


@label_app.command("push")
def label_push(
    labels: Annotated[str, typer.Option(help="Comma-separated label set (the dataset's project must have it).")],
    dataset: Annotated[str, typer.Option(help="Dataset whose newest model ranks the pool.")] = "demo",
    budget: Annotated[int, typer.Option(help="Tasks to push.")] = 80,
    strategy: Annotated[
        str, typer.Option(help="auto, typiclust, probcover, diversity, coreset, margin, entropy, hybrid or random.")
    ] = "auto",
    project: Annotated[str | None, typer.Option(help="Label Studio project title; default 'Flywheel DATASET'.")] = None,
    pool: Annotated[str | None, typer.Option(help="Pool folder; default: the latest ingest's.")] = None,
    gold: Annotated[str | None, typer.Option(help="Gold file under the data root (record_id -> label).")] = None,
    deadline_hours: Annotated[float, typer.Option(help="Close the round after this long even if unfinished.")] = 72.0,
    annotators: Annotated[
        int | None, typer.Option(help="People labeling (each answers every gold task); default: the org's members.")
    ] = None,
    task: Annotated[
        str,
        typer.Option(
            help="What annotators do: classify (one label an image), multilabel (a set of labels), detect (boxes "
            "with labels) or text (one label a text record). One task type per dataset."
        ),
    ] = "classify",
) -> None:
    """Open a label round: the next batch of the pool in Label Studio (model-chosen when a model exists),
    labeled by people at their own pace. Refused while the dataset has an open round."""
    from corpus.tasks import TASK_TYPES
    from pipelines.config import LabelRoundParams
    from pipelines.rounds import label_push_flow

    if task not in TASK_TYPES:
        raise typer.BadParameter(f"{task!r}: expected one of {', '.join(TASK_TYPES)}", param_hint="--task")
    params = LabelRoundParams(
        task=task,
        dataset=dataset,
        pool=pool,
        labels=_split(labels),
        project_title=project,
        budget=budget,
        strategy=strategy,
        gold_path=gold,
        deadline_hours=deadline_hours,
        annotators=annotators,
    )
    with prefect_api():
        report = label_push_flow(params)
    for bulky in ("record_ids", "task_ids", "gold_task_ids"):
        report.pop(bulky, None)
    print_json(report)


@label_app.command("status")
def label_status(
    dataset: Annotated[str, typer.Option(help="Dataset whose open round to show.")] = "demo",
    round_number: Annotated[int | None, typer.Option("--round", help="A round by number instead.")] = None,
) -> None:
    """The open round (or --round N): status, share done, time left, and each annotator's progress."""
    from pipelines.rounds import describe_round

    shown = describe_round(None, dataset, round_number)
    if shown is None:
        console.print(f"dataset {dataset!r} has no open round")
        raise typer.Exit(0)
    print_json(shown)


@label_app.command("close")
def label_close(dataset: Annotated[str, typer.Option(help="Dataset whose open round to close.")] = "demo") -> None:
    """Close the open round now: pull, review, judge it by its quality gate (and the share done), announce."""
    from pipelines.round_close import label_close_flow

    with prefect_api():
        print_json(label_close_flow(dataset=dataset))


@label_app.command("check")
def label_check(dataset: Annotated[str | None, typer.Option(help="Only this dataset's open round.")] = None) -> None:
    """Pull and measure every open round now, and announce the rounds due to close (what the schedule runs)."""
    from pipelines.round_close import label_check_flow

    with prefect_api():
        print_json(label_check_flow(dataset=dataset))


@label_app.command("pull")
def label_pull(project: Annotated[str, typer.Option(help="Label Studio project title.")] = "Flywheel demo") -> None:
    """Pull new and changed annotations into annotations/ and print labels and agreement."""
    from pipelines.rounds import label_pull_flow

    with prefect_api():
        print_json(label_pull_flow(project_title=project))


@label_app.command("listen")
def label_listen(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 that Label Studio's webhooks are sent to.")] = 8790,
) -> None:
    """Relay Label Studio's annotation webhooks to Prefect as events (the label-check deployment's trigger),
    until stopped. Set FLYWHEEL_WEBHOOK_URL to this address so each round's project sends them here."""
    import threading

    from corpus.settings import get_settings
    from pipelines.webhook_bridge import serve_bridge

    secret = get_settings().webhook_secret
    stop = threading.Event()
    console.print(f"relaying Label Studio webhooks from http://127.0.0.1:{port}/ to Prefect events (Ctrl-C stops)")
    try:
        serve_bridge("127.0.0.1", port, secret.get_secret_value() if secret else None, stop)
    finally:
        stop.set()

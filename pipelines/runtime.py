"""What every flow shares: the data root and Label Studio doors, retries on I/O, events, task runners, run names."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import dask.config
import httpx
from prefect import Task, unmapped
from prefect import task as prefect_task
from prefect.blocks.system import Secret
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.context import FlowRunContext
from prefect.events import emit_event
from prefect.futures import as_completed
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from corpus.settings import get_settings
from corpus.store import DataRoot, open_data_root
from labeling.client import LabelStudioApiError, LabelStudioClient, is_retryable
from pipelines.progress import ShardTeller

DATASET_RELEASED = "flywheel.dataset.released"
ROUND_OPENED = "flywheel.round.opened"
ROUND_PROGRESS = "flywheel.round.progress"
ROUND_COMPLETE = "flywheel.round.complete"  # the batch is done or the deadline has passed: close the round
ROUND_PASSED = "flywheel.round.passed"
ROUND_FAILED = "flywheel.round.failed"
MODEL_TRAINED = "flywheel.model.trained"

# Errors that no retry heals: a missing file or project, a bad value, a refused login or request.
_PERMANENT = (LookupError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, ValueError)


def is_transient(exc: BaseException) -> bool:
    """True when the failed I/O may succeed if tried again: a lost connection, a timeout, a 5xx or 429.

    Label Studio errors follow the client's own judgement (labeling.client.is_retryable): a 4xx such as a
    wrong token (401) or an unknown project fails at once. Other OSErrors (a storage hiccup) are transient.
    """
    if isinstance(exc, LabelStudioApiError):
        return is_retryable(exc)
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500 or exc.response.status_code == 429
    if isinstance(exc, _PERMANENT):
        return False
    return isinstance(exc, OSError | TimeoutError | ConnectionError | httpx.TransportError)


def retry_if_transient(task: Task, task_run: TaskRun, state: State) -> bool:
    """Prefect's retry condition for I/O tasks: retry only an exception that `is_transient`."""
    try:
        state.result()
    except Exception as exc:  # the task's own exception, re-raised by its failed state
        return is_transient(exc)
    return False


# Storage and crawl tasks: 3 more tries over ~42 s, only on transient errors. Label Studio tasks take none:
# the client is the one retry layer there (labeling.client), so tries never multiply.
IO_RETRIES: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": [2, 10, 30],
    "retry_condition_fn": retry_if_transient,
}


def task(fn: Callable | None = None, **options: Any) -> Any:
    """Prefect's @task with no input caching: tasks take tables and models whose hashing would cost more
    than the work, and every flow run should do its work (the stage runner skips finished stages itself)."""
    options.setdefault("cache_policy", NO_CACHE)
    return prefect_task(fn, **options) if fn is not None else prefect_task(**options)


_opened: dict[tuple, Any] = {}


def _once(key: tuple, make: Callable[[], Any]) -> Any:
    """`make()` once per process and key (the key holds every setting the object depends on)."""
    if key not in _opened:
        _opened[key] = make()
    return _opened[key]


def open_root(data_root: str | None = None) -> DataRoot:
    """The data root (default: settings'), opened once per process and settings, with the s3 endpoint and
    credentials from settings (never from flow parameters)."""
    settings = get_settings()
    url = data_root or settings.data_root
    secret = settings.s3_secret_access_key.get_secret_value() if settings.s3_secret_access_key else None
    key = ("root", url, settings.s3_endpoint_url, settings.s3_access_key_id, secret, settings.s3_region)
    return _once(key, lambda: open_data_root(url, settings))


def data_root_url(explicit: str | None) -> str:
    """The data root a flow works on: its parameter, else FLYWHEEL_DATA_ROOT."""
    return explicit or get_settings().data_root


def open_label_studio() -> LabelStudioClient:
    """The Label Studio client, made once per process and settings. The token comes from a Prefect Secret
    block when settings name one, else from FLYWHEEL_LABEL_STUDIO_TOKEN; it never passes through flow
    parameters, logs or artifacts."""
    settings = get_settings()
    secret_name = settings.label_studio_token_secret

    def make() -> LabelStudioClient:
        if secret_name:
            token = Secret.load(secret_name, _sync=True).get()
        else:
            token = settings.label_studio_token.get_secret_value()
        return LabelStudioClient(settings.label_studio_base_url, token)

    plain = None if secret_name else settings.label_studio_token.get_secret_value()
    return _once(("label-studio", settings.label_studio_base_url, secret_name, plain), make)


def announce(event: str, dataset: str, payload: dict[str, Any], *, resource: dict[str, str] | None = None) -> None:
    """Emit a Flywheel event on the dataset's resource (or `resource`, with the dataset related)."""
    dataset_resource = {"prefect.resource.id": f"flywheel.dataset.{dataset}", "prefect.resource.name": dataset}
    payload = json.loads(json.dumps(payload, default=str))  # events carry JSON: dates and paths as strings
    if resource is None:
        emit_event(event=event, resource=dataset_resource, payload=payload)
        return
    related = [{"prefect.resource.id": dataset_resource["prefect.resource.id"], "prefect.resource.role": "dataset"}]
    emit_event(event=event, resource=resource, related=related, payload=payload)


def artifact_key(*parts: str) -> str:
    """An artifact key from names: Prefect allows lowercase letters, digits and dashes only."""
    return "-".join(parts).lower().replace("_", "-").replace(".", "-")


def new_run_name(prefix: str) -> str:
    return f"{prefix}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"


# Tasks per task slot and round of a sharded stage: 2 lets a slot whose first task was cheap take another.
PIECE_TASKS_PER_SLOT = 2


@task
def run_pieces(step: Callable[..., Any], batch: list[tuple]) -> list[Any]:
    """Some pieces of one round of a sharded stage, one after another in one task; see curation.rounds."""
    return [step(*args) for args in batch]


def split_into_batches(args: Sequence[tuple], batches: int) -> list[list[int]]:
    """The indices of `args` dealt into at most `batches` batches like cards (piece k to batch k % n), each in
    order: neighbouring pieces are often alike in cost (the images of a crawl or an import side by side, its
    pages after them), so runs of neighbours would give one task every expensive piece."""
    count = max(1, min(batches, len(args)))
    return [list(range(k, len(args), count)) for k in range(count) if k < len(args)]


def count_task_slots() -> int:
    """How many tasks the running flow's task runner runs at once: its Dask cluster's worker threads, or
    the thread pool's size (`FLYWHEEL_DASK_WORKERS`, as `make_task_runner` builds it)."""
    context = FlowRunContext.get()
    runner = context.task_runner if context is not None else None
    if isinstance(runner, DaskTaskRunner):
        return max(1, sum(runner.client.nthreads().values()))
    return get_settings().dask_workers


def map_on_task_runner(step: Callable[..., Any], args: list[tuple], stage: str = "curate") -> list[Any]:
    """The sharded runners' map: the pieces in PIECE_TASKS_PER_SLOT tasks (named `<stage>-<step>`) per task slot
    of the running flow's task runner, results in order. As each task finishes, this process tells a progress line
    per shard in it (pipelines.progress), so the lines reach the command wherever the pieces ran.

    A Prefect task costs ~0.2-0.5 s on a Dask worker (its run is created and its states reported through the
    API), so one task per piece made 48 for 8 shards; a few tasks per slot and round pay that a few times, and
    leave the runner a queue to even out pieces of unequal cost (a worker that is done takes the next task).
    """
    named = run_pieces.with_options(name=f"{stage}-{step.__name__.replace('_', '-')}")
    batches = split_into_batches(args, PIECE_TASKS_PER_SLOT * count_task_slots())
    futures = named.map(unmapped(step), [[args[i] for i in batch] for batch in batches])
    teller, results = ShardTeller(stage, args), {}
    batch_of = {future.task_run_id: batch for future, batch in zip(futures, batches, strict=True)}
    for future in as_completed(list(futures)):
        batch = batch_of[future.task_run_id]
        for i, result in zip(batch, future.result(), strict=True):
            results[i] = result
            teller.finished(step, args[i], result)
    return [results[i] for i in range(len(args))]


# Dask's own periodic work, made rarer: every scheduler, nanny and worker process runs it whether a task runs
# or not, so its CPU grows with a run's wall time, not its rows. Measured on a 2-worker LocalCluster
# (bench/SCALE.md, 2026-12-01 shardcost): 0.076 CPU-s a second idle and 0.09 while tasks ran with the
# defaults, 0.0125 and 0.025 with these; on a loaded machine that was most of a sharded run's extra CPU.
QUIET_DASK: dict[str, Any] = {
    # Default 20 ms: how often each event loop measures its own lag; it only warns when the loop was
    # blocked longer than `distributed.admin.tick.limit` (3 s), which 1 s still sees.
    "distributed.admin.tick.interval": "1s",
    # Default on: each worker samples its threads' stacks every 10 ms for the dashboard's profile page.
    "distributed.worker.profile.enabled": False,
    # Default 500 ms: CPU, memory and network samples for the dashboard's graphs.
    "distributed.admin.system-monitor.interval": "5s",
}


def quiet_dask() -> None:
    """Put QUIET_DASK into this process's Dask config: a LocalCluster started here (its scheduler, its nannies,
    and the workers they start, which inherit their nanny's config) runs with it. A cluster of its own
    (deploy/compose.yaml) sets the same through DASK_* variables."""
    dask.config.set(QUIET_DASK)


def make_task_runner(use_dask: bool) -> TaskRunner:
    """Dask at FLYWHEEL_DASK_ADDRESS if set; else a LocalCluster of FLYWHEEL_DASK_WORKERS processes when
    asked for (on 127.0.0.1, no dashboard, scratch under the work dir, QUIET_DASK); else threads in this
    process."""
    settings = get_settings()
    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    if use_dask:
        quiet_dask()
        return DaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={
                "n_workers": settings.dask_workers,
                "threads_per_worker": 1,
                "processes": True,
                "host": "127.0.0.1",
                "dashboard_address": None,
                "local_directory": str(settings.work_dir / "dask"),
            },
        )
    return ThreadPoolTaskRunner(max_workers=settings.dask_workers)

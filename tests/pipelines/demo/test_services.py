"""Registering the deployments on a real Prefect server: the scheduled label-check's cadence and its queued runs."""

from __future__ import annotations

import contextlib
import itertools
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from corpus.settings import Settings
from pipelines.demo import services

pytestmark = [pytest.mark.prefect]

REPO_ROOT = Path(__file__).resolve().parents[3]


def _queued_label_checks() -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["label-check"])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
            ),
        )


def test_label_check_every_s_replaces_the_cron_and_the_server_queues_its_runs(prefect_api, tmp_path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    settings = Settings(
        data_root=str(tmp_path / "services"), project_dir=REPO_ROOT, label_check_every_s=30, _env_file=None
    )
    # An earlier test's registration (the demo's, on its */10 cron) may have left label-check with queued runs;
    # start from none, as a fresh server would (deleting a deployment drops its queued runs).
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectNotFound):
        client.delete_deployment(client.read_deployment_by_name(services.LABEL_CHECK).id)
    registered_at = datetime.now(UTC)
    services.register_deployments(settings, prefect_api)
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(services.LABEL_CHECK)
    try:
        assert [s.schedule.interval for s in deployment.schedules] == [timedelta(seconds=30)]
        # The server's scheduler, not this test, creates the runs (SQLAlchemy 2.1 made its insert fail: none came).
        # Its loop runs every 60 s (PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS): a deployment registered just
        # after one pass waits a whole loop, and a busy machine stretches it, so wait for two and a half.
        deadline = time.monotonic() + 150
        while not (queued := _queued_label_checks()) and time.monotonic() < deadline:
            time.sleep(1)
        assert queued, "the Prefect server's scheduler queued no label-check run within 150 s; see its log"
        starts = sorted(r.expected_start_time for r in queued)
        assert starts[0] >= registered_at - timedelta(seconds=1)  # nothing left from the cron's schedule
        assert {round(b.timestamp() - a.timestamp()) for a, b in itertools.pairwise(starts)} == {30}
        assert all("auto-scheduled" in r.tags for r in queued)
    finally:
        # No worker runs here: drop the queued runs (with the deployment) so that a later test's worker does not
        # inherit them; the next registration creates label-check again.
        with get_client(sync_client=True) as client:
            client.delete_deployment(deployment.id)

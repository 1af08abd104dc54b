"""The flywheel turning by itself with real annotators: people in their own OS processes label a real Label Studio
over HTTP at a human pace while deploy/prefect.yaml's automations, on a real Prefect server and worker, do the rest.

After the first push the tests call no Flywheel flow: they start annotators, watch the data root and wait.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pyarrow.compute as pc
import pytest
from annotator_http import sign_up
from labeled_pools import make_labeled_pool

from corpus.pool import remember_pool
from corpus.schema import ANNOTATION_SCHEMA
from corpus.store import DataRoot
from labeling.client import LabelStudioClient
from labeling.gate import QualityGate
from labeling.round_state import LabelRound
from labeling.round_store import list_round_numbers, load_round
from labeling.sync import ANNOTATIONS_DIR
from pipelines.config import LabelRoundParams
from pipelines.rounds import label_push_flow
from training.registry import list_models, read_metadata

pytestmark = [pytest.mark.e2e, pytest.mark.labelstudio, pytest.mark.prefect]

ANNOTATOR = Path(__file__).resolve().parents[1] / "annotator_process.py"
LABELS = ["red", "green", "blue", "gray"]
# A gate a round of ~20 tasks can meet; production's thresholds (QualityGate()) are for rounds of ~100.
SMALL_GATE = QualityGate(min_krippendorff_alpha=None, min_gold_accuracy=None, min_new_labels=4)
# Label Studio locks a task served by /next to its annotator this long: short, so that the task someone walked
# away from goes back to the queue within the test (CE's default is a day; Flywheel's supervisor sets 900 s).
LOCK_TTL_S = 5
# Someone who answered nothing for this long stops owing gold answers (idle_after_hours). Above the slowest
# annotator's longest pause (3 s x pace 2 = 6 s, plus a slow server's reply), far below the time the others need
# to finish the round after the one who stops has gone.
IDLE_AFTER_S = 15


@pytest.fixture()
def task_lock_ttl_s() -> int:
    """own_label_studio's task lock (tests/conftest.py reads this fixture)."""
    return LOCK_TTL_S


class Crowd:
    """Annotator processes (tests/annotator_process.py), each with its own token; stopped (SIGTERM) on exit."""

    def __init__(self, studio, project_id: int, truth_path: Path, folder: Path) -> None:
        self.studio, self.project_id, self.truth_path, self.folder = studio, project_id, truth_path, folder
        self.procs: dict[str, subprocess.Popen] = {}
        self.client = LabelStudioClient(studio.url, studio.token)

    def join(self, name: str, seed: int, **options: object) -> None:
        """Sign `name` up by the invite link and start them labeling; options are annotator_process flags."""
        token = sign_up(self.client.invite_url(), f"{name}@example.com", "Real-annotator-2024")
        argv = [sys.executable, str(ANNOTATOR), "--url", self.studio.url, "--token", token]
        argv += ["--project", str(self.project_id), "--answer-from", str(self.truth_path), "--seed", str(seed)]
        argv += ["--report", str(self.folder / f"{name}.json")]
        for flag, value in options.items():
            argv += [f"--{flag.replace('_', '-')}", str(value)]
        # No PYTHONPATH: the process could not import Flywheel even by mistake.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        log = (self.folder / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.folder)

    def report(self, name: str) -> dict:
        path = self.folder / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def crashed(self) -> list[str]:
        """Annotators whose process ended with an error (a refused save, a server gone for good)."""
        return [
            f"{name}: {(self.folder / f'{name}.log').read_text()[-800:]}"
            for name, proc in self.procs.items()
            if proc.poll() not in (None, 0)
        ]

    def __enter__(self) -> Crowd:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _pool_with_truth(root: DataRoot, folder: Path, dataset: str, per_class: int, seed: int) -> tuple[str, Path, str]:
    """(the pool, the truth file only annotators read, the gold file under the data root: a third of the pool)."""
    # The latest pool, as an ingest leaves it: label-next-round opens each later round on the newest pool.
    pool = remember_pool(root, make_labeled_pool(root, per_class=per_class, seed=seed, annotated=False))
    records = root.read_table(pool).select(["record_id", "url"]).to_pylist()
    truth = {r["record_id"]: urlsplit(r["url"]).path.split("/")[1] for r in records}  # /<colour>/<i>.png
    truth_path = folder / "truth.json"
    truth_path.write_text(json.dumps(truth))
    gold_path = f"gold/{dataset}.json"
    root.write_json(gold_path, dict(sorted(truth.items())[::3]))
    return pool, truth_path, gold_path


def _params(root: DataRoot, pool: str, gold_path: str, dataset: str, **extra: object) -> LabelRoundParams:
    values = {
        "dataset": dataset,
        "pool": pool,
        "labels": LABELS,
        "budget": 12,
        "overlap_fraction": 0.5,
        "overlap_k": 2,
        "min_per_class": 0,
        "gold_path": gold_path,
        "gold_per_round": 4,
        "gate": SMALL_GATE,
        "annotators": 3,
        "idle_after_hours": IDLE_AFTER_S / 3600,
        "next_budgets": [],
        "data_root": root.url,
        **extra,
    }
    return LabelRoundParams(**values)


def _rounds(root: DataRoot, dataset: str) -> list[LabelRound]:
    return [load_round(root, dataset, n) for n in list_round_numbers(root, dataset)]


def _wait_for(what: str, found: Callable[[], object], timeout_s: float, explain: Callable[[], str]) -> object:
    """Poll `found` until it returns something truthy; fail after `timeout_s` with `explain()`. The limits are
    generous on purpose: this waits for people and automations, it does not time them."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(2.0)
    pytest.fail(f"after {timeout_s:.0f} s still waiting for {what}: {explain()}")


def _explain(root: DataRoot, dataset: str, crowd: Crowd) -> Callable[[], str]:
    def explain() -> str:
        rounds = [
            (r.id, r.status, r.close_reason, r.progress.get("done"), r.progress.get("needed"))
            for r in _rounds(root, dataset)
        ]
        models = [(m, read_metadata(root, m).get("release")) for m in list_models(root)]
        return f"rounds {rounds}; models {models}; crashed annotators {crowd.crashed()}"

    return explain


def _model_of(root: DataRoot, dataset: str, release: str) -> str | None:
    """The model trained on `release` of `dataset`, if there is one yet."""
    for name in list_models(root):
        meta = read_metadata(root, name)
        if meta.get("dataset") == dataset and meta.get("release") == release:
            return name
    return None


def test_the_flywheel_turns_by_itself_with_three_real_annotators(studio, turning_flywheel, tmp_path) -> None:
    root = DataRoot(str(studio.document_root))
    pool, truth_path, gold_path = _pool_with_truth(root, tmp_path, "turn", per_class=12, seed=11)
    params = _params(root, pool, gold_path, "turn", budget=16, next_budgets=[12, 6])
    opened = label_push_flow(params)  # round 1, by hand, as a lead does once; the automations do the rest
    assert opened["opened"] and opened["tasks"] == 16 + 4

    with Crowd(studio, opened["project_id"], truth_path, tmp_path) as crowd:
        crowd.join("steady", seed=1, pace=1.0)
        crowd.join("slow", seed=2, pace=2.0, error_rate=0.1)
        crowd.join("quitter", seed=3, pace=1.0, stop_after=4)  # opens a fifth task and walks away from it

        def round_3_with_the_v0002_model() -> LabelRound | None:
            model = _model_of(root, "turn", "v0002")
            rounds = _rounds(root, "turn")
            if model and len(rounds) >= 3 and rounds[2].model_version == model and rounds[2].status == "labeling":
                return rounds[2]
            return None

        third = _wait_for(
            "round 3 opened by the model trained on v0002",
            round_3_with_the_v0002_model,
            900,
            _explain(root, "turn", crowd),
        )
        quitter = crowd.report("quitter")
        assert quitter["reason"] == "stopped" and len(quitter["answered"]) == 4
        assert not crowd.crashed()

    first, second = _rounds(root, "turn")[:2]
    # Round 1 closed because its batch was done, not at its deadline: the quitter stopped owing gold once idle.
    assert first.close_reason == "complete" and first.released_as == "v0001"
    cards = first.progress["per_annotator"]
    assert set(cards) == {"steady", "slow", "quitter"} and cards["quitter"]["active"] is False
    assert cards["steady"]["gold_answered"] == cards["slow"]["gold_answered"] == 4
    assert second.model_version == _model_of(root, "turn", "v0001") and second.strategy == "hybrid"
    assert second.close_reason == "complete" and second.released_as == "v0002"
    assert set(second.progress["per_annotator"]) == {"steady", "slow"}  # the quitter never came back
    assert third.model_version == _model_of(root, "turn", "v0002")
    # Label Studio: every task once, and round 3's tasks carry the v0002 model's predictions as pre-annotations.
    client = LabelStudioClient(studio.url, studio.token)
    tasks = client.list_tasks(opened["project_id"])
    counts = Counter(t["data"]["record_id"] for t in tasks)
    assert max(counts.values()) == 1 and len(tasks) == sum(len(r.tasks) for r in (first, second, third))
    round_3_tasks = [t for t in tasks if t["id"] in set(third.tasks.values())]
    assert len(round_3_tasks) == len(third.tasks) > 0
    assert all([p["model_version"] for p in t["predictions"]] == [third.model_version] for t in round_3_tasks)
    # The task the quitter walked away from was locked to them for LOCK_TTL_S only: someone else answered it.
    walked = quitter["walked_away_from"]
    if walked in first.tasks:
        answered = [a for t in tasks if t["data"]["record_id"] == walked for a in t["annotations"]]
        assert answered, f"nobody answered {walked}, the task the quitter left open"


def test_annotators_who_stop_leave_the_round_to_its_deadline_with_its_reasons(
    studio, turning_flywheel, tmp_path
) -> None:
    root = DataRoot(str(studio.document_root))
    pool, truth_path, gold_path = _pool_with_truth(root, tmp_path, "late", per_class=6, seed=12)
    opened = label_push_flow(_params(root, pool, gold_path, "late", deadline_hours=90 / 3600))
    # After everyone stopped no webhook comes: the label-check run scheduled at the deadline sees it pass.
    with Crowd(studio, opened["project_id"], truth_path, tmp_path) as crowd:
        for i, name in enumerate(("ann", "bob", "cy")):
            crowd.join(name, seed=20 + i, pace=0.5, stop_after=2)
        first = _wait_for(
            "round 1 closed at its deadline",
            lambda: _rounds(root, "late")[0].status == "closed" and _rounds(root, "late")[0],
            400,
            _explain(root, "late", crowd),
        )
        assert all(crowd.report(name).get("reason") == "stopped" for name in ("ann", "bob", "cy"))
    assert first.close_reason == "deadline" and not first.verdict["passed"]
    share = next(c for c in first.verdict["criteria"] if c["name"] == "share_done")
    assert share["value"] < 0.8 and not share["ok"]
    assert any("of the planned annotations done" in reason for reason in first.verdict["reasons"])
    assert datetime.fromisoformat(first.history[-1]["at"]) >= datetime.fromisoformat(first.deadline)
    assert not root.exists("releases/late")  # a failed round releases nothing


def _label_check_runs(since: datetime) -> list:
    """The label-check deployment's flow runs expected to start after `since` (the session's server keeps
    earlier tests' runs)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
    )

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["label-check"])),
            flow_run_filter=FlowRunFilter(expected_start_time=FlowRunFilterExpectedStartTime(after_=since)),
        )


# A scheduled check every 20 s: label-check's ten-minute cron would outlast the test. Each run is a new
# process on the worker (~15 s on a loaded 2-core machine), so a shorter interval would only queue them.
@pytest.mark.parametrize("label_check_every_s", [20])
def test_a_webhook_never_delivered_leaves_the_round_to_the_scheduled_check(
    studio, turning_flywheel, tmp_path, label_check_every_s
) -> None:
    since = datetime.now(UTC)
    root = DataRoot(str(studio.document_root))
    pool, truth_path, gold_path = _pool_with_truth(root, tmp_path, "quiet", per_class=5, seed=13)
    opened = label_push_flow(_params(root, pool, gold_path, "quiet", budget=8))
    headers = {"Authorization": f"Token {studio.token}"}
    hooks = httpx.get(f"{studio.url}/api/webhooks/", params={"project": opened["project_id"]}, headers=headers)
    assert [hook["url"] for hook in hooks.json()] == [turning_flywheel]  # the push set it; now it is lost
    for hook in hooks.json():
        httpx.delete(f"{studio.url}/api/webhooks/{hook['id']}/", headers=headers).raise_for_status()
    with Crowd(studio, opened["project_id"], truth_path, tmp_path) as crowd:
        explain = _explain(root, "quiet", crowd)

        def explain_with_runs() -> str:
            states = Counter((r.state_name, "auto-scheduled" in r.tags) for r in _label_check_runs(since))
            return f"{explain()}; label-check runs (state, auto-scheduled): {dict(states)}"

        for i, name in enumerate(("ann", "bob", "cy")):
            crowd.join(name, seed=30 + i, pace=0.5, skip_rate=0.0, linger=30)
        first = _wait_for(
            "round 1 closed by a scheduled label-check run",
            lambda: _rounds(root, "quiet")[0].status == "closed" and _rounds(root, "quiet")[0],
            240,
            explain_with_runs,
        )
        assert not crowd.crashed()
    assert first.close_reason == "complete" and first.verdict["passed"]
    finished = [r for r in _label_check_runs(since) if r.state and r.state.is_completed()]
    # Only the server's scheduler started label-check: no webhook reached the bridge, so no event did.
    assert finished and all("auto-scheduled" in r.tags for r in finished), [(r.name, r.tags) for r in finished]


def test_label_studio_restarted_mid_round_loses_and_doubles_nothing(studio, turning_flywheel, tmp_path) -> None:
    root = DataRoot(str(studio.document_root))
    pool, truth_path, gold_path = _pool_with_truth(root, tmp_path, "restart", per_class=6, seed=14)
    opened = label_push_flow(_params(root, pool, gold_path, "restart", budget=16))
    project_id = opened["project_id"]
    client = LabelStudioClient(studio.url, studio.token)

    def saved() -> int:
        return sum(len(t["annotations"]) for t in client.list_tasks(project_id))

    with Crowd(studio, project_id, truth_path, tmp_path) as crowd:
        for i, name in enumerate(("ann", "bob", "cy")):
            crowd.join(name, seed=40 + i, pace=0.7, skip_rate=0.0, linger=60)
        _wait_for("a third of the round labeled", lambda: saved() >= 10, 300, _explain(root, "restart", crowd))
        studio.server.stop()  # SIGTERM; the annotators' browsers keep trying, flow runs meanwhile fail or retry
        time.sleep(5)
        studio.server.start()
        restarted_at = datetime.now(UTC)
        first = _wait_for(
            "round 1 closed after the restart",
            lambda: _rounds(root, "restart")[0].status == "closed" and _rounds(root, "restart")[0],
            400,
            _explain(root, "restart", crowd),
        )
        assert not crowd.crashed()
    assert sum(crowd.report(name).get("retries", 0) for name in crowd.procs) > 0  # they met the server down
    assert first.close_reason == "complete"
    tasks = client.list_tasks(project_id)
    # no task twice in the project, and no person twice on a task (a save whose reply was lost is not resent)
    assert len(tasks) == len(first.tasks) == len({t["data"]["record_id"] for t in tasks})
    for task in tasks:
        people = [a["completed_by"] for a in task["annotations"]]
        assert len(people) == len(set(people)), task["id"]
    later = [a for t in tasks for a in t["annotations"] if datetime.fromisoformat(a["created_at"]) > restarted_at]
    assert later, "no annotation was saved after the restart: the restart was not mid-round"
    # every annotation in Label Studio is in annotations/ exactly once
    pulled = root.read_table(ANNOTATIONS_DIR, schema=ANNOTATION_SCHEMA)
    pulled = pulled.filter(pc.equal(pulled.column("project_id"), project_id))
    ids = pulled.column("annotation_id").to_pylist()
    assert len(ids) == len(set(ids)), Counter(ids).most_common(3)
    assert set(ids) == {a["id"] for t in tasks for a in t["annotations"]}

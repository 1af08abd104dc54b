"""Sync benchmark against a real Label Studio server: push tasks with predictions, then pull new annotations
incrementally vs the SDK's full JSON export, at two project sizes (pull cost should follow new annotations).

Starts its own server (pipelines.demo.label_studio_server, from the pre-migrated template via ensure_template,
on a free port).
Run: `.venv/bin/python bench/sync.py` (QUICK=1 for a small run).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from corpus.store import DataRoot
from labeling.client import WATERMARK_MARGIN_S, LabelStudioClient
from labeling.label_config import build_label_config
from labeling.sync import pull_annotations, push_tasks
from pipelines.demo.label_studio_server import LabelStudioServer, ensure_template, find_free_port

REPO = Path(__file__).resolve().parent.parent
LS_VENV = REPO / ".venv-ls"
TEMPLATE = REPO / ".cache" / "label-studio-template"
# The same admin as tests/conftest.py and corpus.settings' defaults, so one template serves all.
USERNAME, PASSWORD, TOKEN = "admin@flywheel.local", "flywheel-admin", "flywheel-demo-token-0001"
LABELS = ["dots", "stripes", "checks", "sky"]


def _choice(label: str) -> list[dict]:
    return [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]


def make_tasks(start: int, n: int, *, annotated_every: int, user: int) -> list[dict]:
    """Tasks rec-<i> with one prediction each; every `annotated_every`-th one (1 = all) carries an annotation."""
    tasks = []
    for i in range(start, start + n):
        label = LABELS[i % len(LABELS)]
        task = {
            "data": {"image": f"media/{i}.png", "record_id": f"rec-{i:06d}", "caption": "", "priority": 0.5},
            "predictions": [{"model_version": "bench-v1", "score": 0.7, "result": _choice(label)}],
        }
        if annotated_every and i % annotated_every == 0:
            task["annotations"] = [{"result": _choice(label), "completed_by": user, "lead_time": 3.0}]
        tasks.append(task)
    return tasks


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", default=os.environ.get("QUICK") == "1")
    args = parser.parse_args(argv)
    small, large, new = (500, 1500, 100) if args.quick else (2000, 10000, 1000)
    template = ensure_template(TEMPLATE, venv=LS_VENV, username=USERNAME, password=PASSWORD, token=TOKEN)
    with tempfile.TemporaryDirectory(prefix="flywheel-bench-sync-") as tmp:
        base = Path(tmp)
        (base / "root").mkdir()
        server = LabelStudioServer(
            base / "ls-data",
            venv=LS_VENV,
            port=find_free_port(),
            document_root=base / "root",
            username=USERNAME,
            password=PASSWORD,
            token=TOKEN,
            template=template,
            log_path=base / "ls.log",
        )
        _, start_s = timed(server.start)
        try:
            client = LabelStudioClient(server.url, TOKEN, timeout=900)
            root = DataRoot(str(base / "root"))
            project = client.ensure_project("bench sync", build_label_config(LABELS))
            user = client.ensure_user("bench_annotator", "bench_annotator@annotators.flywheel.local")
            print(f"server started in {start_s:.1f} s; small={small} large={large} new annotations={new}")
            rows = []
            size = 0
            push_rate = None
            for target in (small, large):
                # Grow the project to `target - new` tasks, half of them already annotated, and pull them.
                grow = make_tasks(size, target - new - size, annotated_every=2, user=user)
                pushed, push_s = timed(push_tasks, client, root, project, grow)
                if target == large:
                    push_rate = (pushed["pushed"], push_s)
                size = target - new
                # Pulls and pushes are minutes apart in use; here they are kept further apart than the margin the
                # pull watermark keeps (WATERMARK_MARGIN_S), else the next pull re-reads what was just pushed.
                time.sleep(WATERMARK_MARGIN_S + 1)
                timed(pull_annotations, client, root, project)
                time.sleep(WATERMARK_MARGIN_S + 1)
                # `new` annotations arrive (on fresh tasks, imported with their annotation in one call).
                push_tasks(client, root, project, make_tasks(size, new, annotated_every=1, user=user))
                size = target
                pulled, pull_s = timed(pull_annotations, client, root, project)
                exported, export_s = timed(client.export_json, project)
                annotated = sum(1 for t in exported if t.get("annotations"))
                assert pulled["new"] == new, f"incremental pull found {pulled['new']} new annotations, expected {new}"
                rows.append((target, annotated, new, pull_s, export_s))
            print(
                "\n| project tasks | annotated tasks | new annotations | incremental pull s | full JSON export s "
                "| export/pull |"
            )
            print("|---|---|---|---|---|---|")
            for target, annotated, n_new, pull_s, export_s in rows:
                ratio = export_s / pull_s
                print(f"| {target} | {annotated} | {n_new} | {pull_s:.2f} | {export_s:.2f} | {ratio:.1f}x |")
            n_push, push_s = push_rate
            print(
                f"\npush: {n_push} tasks with one prediction each (half with an annotation) in {push_s:.1f} s "
                f"({n_push / push_s:.0f} tasks/s, journaled batches of 1000)"
            )
            growth_pull = rows[1][3] / rows[0][3]
            growth_export = rows[1][4] / rows[0][4]
            print(
                f"project x{large / small:.0f}: incremental pull time x{growth_pull:.2f}, "
                f"export time x{growth_export:.2f}"
            )
            target, _, n_new, pull_s, export_s = rows[-1]
            print(
                f"bench sync: tasks={target} new_annotations={n_new} pull_s={pull_s:.2f} export_s={export_s:.2f} "
                f"push_tasks_per_s={n_push / push_s:.0f} pull_growth={growth_pull:.2f} ratio={export_s / pull_s:.2f}"
            )
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

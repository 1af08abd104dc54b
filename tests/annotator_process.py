"""One annotator as an OS process: labels a Label Studio project through its queue with their own token, over HTTP.

What a person in a browser does, and nothing of Flywheel: only httpx and the standard library. Run by tests as

    python tests/annotator_process.py --url URL --token TOKEN --project ID --answer-from truth.json
        [--pace 1.0] [--stop-after N] [--error-rate 0.05] [--skip-rate 0.1] [--seed 0] [--linger 600]
        [--report out.json]

Each served task (GET /api/projects/<id>/next) is answered from the truth file (record_id -> label), wrong at
`--error-rate`, or skipped at `--skip-rate` (a cancelled annotation, Label Studio's Skip button: the queue then
serves the next one, so tasks are answered out of the queue's order). Between tasks it waits 0.5-3 s times
`--pace`. After `--stop-after` answers it opens one more task and walks away from it (the task stays locked to
them until Label Studio's TASK_LOCK_TTL). An empty queue is waited on (the next round comes) for `--linger`
seconds. A server that is down (restarting) is waited for; a save whose reply was lost is looked up before it is
sent again, so nothing is saved twice. `--report` gets what was done, as JSON, when the process ends.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import time
from pathlib import Path

import httpx

# How long a server that does not answer is waited for (a restart of Label Studio takes 10-60 s on 2 cores).
DOWN_FOR_S = 300.0
RETRY_S = 1.0


class Annotator:
    """One person's session: their token, their answers, what they did."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.truth: dict[str, str] = json.loads(Path(args.answer_from).read_text())
        self.labels = sorted(set(self.truth.values()))
        self.rng = random.Random(args.seed)
        self.http = httpx.Client(base_url=args.url, headers={"Authorization": f"Token {args.token}"}, timeout=30)
        self.me: int | None = None
        self.done = {"answered": [], "skipped": [], "walked_away_from": None, "retries": 0, "reason": None}

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        """The request, tried again while the server is down or answers 5xx (it is restarting)."""
        given_up_at = time.monotonic() + DOWN_FOR_S
        while True:
            try:
                response = self.http.request(method, path, **kwargs)
                if response.status_code < 500:
                    return response
            except httpx.TransportError:
                pass
            if time.monotonic() > given_up_at:
                raise SystemExit(f"{self.args.url} did not answer {method} {path} for {DOWN_FOR_S:.0f} s")
            self.done["retries"] += 1
            time.sleep(RETRY_S)

    def whoami(self) -> int:
        response = self.request("GET", "/api/current-user/whoami")
        response.raise_for_status()
        return int(response.json()["id"])

    def next_task(self) -> dict | None:
        response = self.request("GET", f"/api/projects/{self.args.project}/next")
        if response.status_code == 404:  # the queue has nothing for me now
            return None
        response.raise_for_status()
        return response.json()

    def _saved_already(self, task_id: int) -> bool:
        response = self.request("GET", f"/api/tasks/{task_id}/annotations/")
        response.raise_for_status()
        return any(a.get("completed_by") == self.me for a in response.json())

    def save(self, task_id: int, body: dict) -> None:
        """POST the annotation; if the reply is lost (the server went down mid-request), look before sending again."""
        given_up_at = time.monotonic() + DOWN_FOR_S
        while True:
            try:
                response = self.http.post(f"/api/tasks/{task_id}/annotations/", json=body)
                if response.status_code == 201:
                    return
                if response.status_code < 500:
                    raise SystemExit(
                        f"saving on task {task_id} was refused: {response.status_code} {response.text[:300]}"
                    )
            except httpx.TransportError:
                pass
            self.done["retries"] += 1
            if time.monotonic() > given_up_at:
                raise SystemExit(f"could not save on task {task_id} for {DOWN_FOR_S:.0f} s")
            time.sleep(RETRY_S)
            if self._saved_already(task_id):
                return

    def answer(self, task: dict) -> None:
        record_id = task["data"]["record_id"]
        if self.rng.random() < self.args.skip_rate:
            self.save(task["id"], {"was_cancelled": True, "result": []})
            self.done["skipped"].append(record_id)
            return
        label = self.truth[record_id]
        if self.rng.random() < self.args.error_rate:
            label = self.rng.choice([other for other in self.labels if other != label])
        result = [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]
        self.save(task["id"], {"result": result, "lead_time": round(self.rng.uniform(1, 20), 1)})
        self.done["answered"].append(record_id)

    def work(self) -> None:
        self.me = self.whoami()
        idle_since = None
        while True:
            if self.args.stop_after is not None and len(self.done["answered"]) >= self.args.stop_after:
                task = self.next_task()  # opened, never answered: the browser tab left open
                self.done["walked_away_from"] = task["data"]["record_id"] if task else None
                self.done["reason"] = "stopped"
                return
            task = self.next_task()
            if task is None:
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since > self.args.linger:
                    self.done["reason"] = "queue empty"
                    return
                time.sleep(2.0)
                continue
            idle_since = None
            self.answer(task)
            time.sleep(self.rng.uniform(0.5, 3.0) * self.args.pace)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--project", type=int, required=True)
    parser.add_argument("--answer-from", required=True, help="JSON: record_id -> true label")
    parser.add_argument("--pace", type=float, default=1.0, help="the 0.5-3 s pause between tasks is multiplied by this")
    parser.add_argument("--stop-after", type=int, default=None, help="walk away after this many answers")
    parser.add_argument("--error-rate", type=float, default=0.05)
    parser.add_argument("--skip-rate", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--linger", type=float, default=600.0, help="seconds an empty queue is waited on")
    parser.add_argument("--report", default=None, help="write what was done here (JSON) at the end")
    args = parser.parse_args(argv)
    person = Annotator(args)
    # A test ends the session with SIGTERM; the report is still written.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        person.work()
    finally:
        if person.done["reason"] is None:
            person.done["reason"] = "ended"
        if args.report:
            Path(args.report).write_text(json.dumps(person.done))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The webhook bridge: Label Studio's annotation webhooks become Prefect events that run the round check."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from labeling.webhook import WebhookReceiver, wants_pull
from pipelines.runtime import announce

log = logging.getLogger(__name__)

ANNOTATION_ACTIVITY = "flywheel.labelstudio.annotation"
# A burst of saves (an annotator working fast, a bulk import of annotations) becomes one event per project
# at most this often: each event starts a round check (a pull and a few API calls, ~2-5 s on 2 cores).
MIN_INTERVAL_S = 20.0


def _project_of(event: dict) -> int | None:
    project = event.get("project")
    found = project.get("id") if isinstance(project, dict) else project
    return int(found) if found is not None else None


def relay_events(
    receiver: WebhookReceiver,
    stop: threading.Event,
    *,
    emit: Callable[[int, int], None],
    min_interval_s: float = MIN_INTERVAL_S,
) -> int:
    """Turn queued webhook events into `emit(project_id, events)` calls until `stop` is set: at most one per
    project every `min_interval_s`, and always one after the last event of a burst (trailing). Returns how
    many times it emitted."""
    pending: dict[int, int] = {}
    last: dict[int, float] = {}
    emitted = 0
    while not stop.is_set():
        try:
            event = receiver.events.get(timeout=0.5)
            project = _project_of(event)
            if wants_pull(event) and project is not None:
                pending[project] = pending.get(project, 0) + 1
        except queue.Empty:
            pass
        now = time.monotonic()
        for project in [p for p in pending if now - last.get(p, -1e9) >= min_interval_s]:
            try:
                emit(project, pending[project])
            except Exception:  # an unreachable Prefect API must not end the bridge; the scheduled check covers
                log.exception("could not announce activity in project %s; trying again later", project)
                continue
            last[project] = now
            del pending[project]
            emitted += 1
    return emitted


def announce_activity(project_id: int, events: int) -> None:
    """The Prefect event for annotations saved in a project (the label-check deployment's trigger)."""
    resource = {"prefect.resource.id": f"flywheel.labelstudio.project.{project_id}"}
    announce(ANNOTATION_ACTIVITY, "labelstudio", {"project_id": project_id, "events": events}, resource=resource)


def serve_bridge(host: str, port: int, secret: str | None, stop: threading.Event) -> None:
    """Receive Label Studio webhooks on host:port (checking `secret`) and relay them until `stop` is set."""
    with WebhookReceiver(host, port, secret=secret) as receiver:
        log.info("webhook bridge listening on %s", receiver.url)
        relay_events(receiver, stop, emit=announce_activity)

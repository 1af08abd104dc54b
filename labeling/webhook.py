"""Optional webhook receiver: Label Studio annotation events wake a pull loop that otherwise polls on a timer."""

from __future__ import annotations

import hmac
import json
import logging
import queue
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)

# Events that mean "there are annotations to pull" (Label Studio webhook action names).
PULL_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED")
SECRET_HEADER = "X-Flywheel-Webhook"
# Label Studio waits WEBHOOK_TIMEOUT (1 s by default) for the receiver inside the annotator's save request
# (notes/label-studio.md §6), so the handler only queues the event and answers at once.
MAX_BODY_BYTES = 1 << 20
# Without events the loop still pulls this often: polling is the fallback, the webhook only makes it sooner.
POLL_INTERVAL_S = 300.0


class WebhookReceiver:
    """A loopback HTTP endpoint for Label Studio webhooks; each accepted event is queued, nothing else.

    When `secret` is set, a request must carry it in the SECRET_HEADER header (register the webhook
    with `headers={SECRET_HEADER: secret}`); others get 403. Start with `start()`, stop with `stop()`.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, secret: str | None = None) -> None:
        self.events: queue.Queue[dict] = queue.Queue()
        self._secret = secret
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if receiver._secret is not None and not hmac.compare_digest(
                    self.headers.get(SECRET_HEADER, ""), receiver._secret
                ):
                    self.send_response(403)
                    self.end_headers()
                    return
                length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY_BYTES)
                try:
                    event = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    self.send_response(400)
                    self.end_headers()
                    return
                receiver.events.put(event if isinstance(event, dict) else {"payload": event})
                self.send_response(200)
                self.end_headers()

            def log_message(self, fmt: str, *args: object) -> None:
                log.debug("webhook: " + fmt, *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> WebhookReceiver:
        self._thread = threading.Thread(target=self._server.serve_forever, name="flywheel-webhook", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wants_pull(event: dict, project_id: int | None = None) -> bool:
    """True when `event` is an annotation change (PULL_ACTIONS), for `project_id` if given."""
    if event.get("action") not in PULL_ACTIONS:
        return False
    if project_id is None:
        return True
    project = event.get("project")
    found = project.get("id") if isinstance(project, dict) else project
    return found is None or int(found) == int(project_id)


def run_pull_loop(
    receiver: WebhookReceiver | None,
    pull: Callable[[], dict],
    stop: threading.Event,
    *,
    project_id: int | None = None,
    poll_interval_s: float = POLL_INTERVAL_S,
    on_pull: Callable[[dict], None] | None = None,
) -> int:
    """Call `pull` whenever an annotation event arrives (events in a burst share one pull) or every
    `poll_interval_s`, until `stop` is set; returns how many pulls ran. `receiver` None = polling only.

    Runs in the caller's thread (start it in one of its own); `pull` is e.g.
    `lambda: sync.pull_annotations(client, root, project_id)`, which is incremental and idempotent, so an
    extra or a missed event costs nothing but time. A failing pull is logged and tried again next time.
    """
    pulls = 0
    while not stop.is_set():
        triggered = False
        if receiver is None:
            stop.wait(poll_interval_s)
            triggered = not stop.is_set()
        else:
            try:
                event = receiver.events.get(timeout=poll_interval_s)
                triggered = wants_pull(event, project_id)
            except queue.Empty:
                triggered = True  # the polling fallback
            # Drain the burst: one pull covers every event that arrived meanwhile.
            while True:
                try:
                    triggered = wants_pull(receiver.events.get_nowait(), project_id) or triggered
                except queue.Empty:
                    break
        if not triggered or stop.is_set():
            continue
        try:
            result = pull()
        except Exception:
            log.exception("pull after webhook failed; will retry on the next event or poll")
            continue
        pulls += 1
        if on_pull is not None:
            on_pull(result)
    return pulls

"""The one door to Label Studio: a thin, retrying wrapper over label-studio-sdk 2.x returning plain Python types."""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError
from label_studio_sdk.data_manager import Column, Filters, Operator, Type

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

# 5 tries with 0.5 s doubling backoff spans ~7.5 s: enough to ride out a dev-server restart or a
# SQLite "database is locked" 5xx (seen under concurrent writes), short enough to fail a flow fast.
MAX_TRIES = 5
BACKOFF_S = 0.5
# Margin subtracted from the incremental-pull watermark, so clock skew between the server's stored
# timestamps and the moment of the previous pull cannot skip an annotation; duplicates are removed later.
WATERMARK_MARGIN_S = 5.0


class LabelStudioApiError(RuntimeError):
    """A Label Studio call failed for good (after retries, or with a 4xx that retrying cannot fix)."""


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, ApiError):
        return exc.status_code is None or exc.status_code >= 500 or exc.status_code == 429
    return isinstance(exc, httpx.TransportError)


def _with_retries(func: F) -> F:
    """Retry `func` on connection errors, 429 and 5xx with exponential backoff; wrap final errors."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for attempt in range(1, MAX_TRIES + 1):
            try:
                return func(*args, **kwargs)
            except (ApiError, httpx.HTTPError) as exc:
                status = getattr(exc, "status_code", None)
                if attempt == MAX_TRIES or not _retryable(exc):
                    body = getattr(exc, "body", None)
                    # Only the status and body are reported: the token never appears in messages or logs.
                    raise LabelStudioApiError(
                        f"Label Studio {func.__name__} failed (status {status}, try {attempt}): "
                        f"{body if body is not None else type(exc).__name__}"
                    ) from exc
                delay = BACKOFF_S * 2 ** (attempt - 1)
                log.warning(
                    "Label Studio %s failed (status %s); retry %d in %.1f s", func.__name__, status, attempt, delay
                )
                time.sleep(delay)
        raise AssertionError("unreachable")

    return wrapper  # type: ignore[return-value]


def _dump(obj: Any) -> dict:
    if isinstance(obj, dict):
        return obj
    return obj.model_dump(mode="json")


def _annotation_dict(raw: dict) -> dict:
    completed_by = raw.get("completed_by")
    if isinstance(completed_by, dict):
        completed_by = completed_by.get("id")
    return {
        "id": raw["id"],
        "completed_by": completed_by,
        "result": raw.get("result") or [],
        "created_at": raw.get("created_at"),
        "updated_at": raw.get("updated_at"),
        "lead_time": raw.get("lead_time"),
        "was_cancelled": bool(raw.get("was_cancelled")),
    }


class LabelStudioClient:
    """Label Studio over its REST API (SDK 2.x); every call retries and returns dicts, lists and ints."""

    def __init__(self, url: str, token: str, timeout: float = 120) -> None:
        self.url = url.rstrip("/")
        # The SDK's own retries are off: _with_retries is the one retry policy, so tries do not multiply.
        self._sdk = LabelStudio(base_url=self.url, api_key=token, timeout=timeout, max_retries=0)

    def __repr__(self) -> str:
        return f"LabelStudioClient({self.url!r})"

    # projects

    @_with_retries
    def find_project(self, title: str) -> int | None:
        """The id of the project titled exactly `title`, or None."""
        for project in self._sdk.projects.list(title=title, page_size=100):
            if project.title == title:
                return int(project.id)
        return None

    def ensure_project(self, title: str, label_config: str, *, description: str = "") -> int:
        """The id of the project titled `title`, created with `label_config` if there is none."""
        if len(title) < 3:
            raise ValueError(f"Label Studio needs project titles of at least 3 characters; got {title!r}")
        existing = self.find_project(title)
        if existing is not None:
            return existing
        return self._create_project(title, label_config, description)

    @_with_retries
    def _create_project(self, title: str, label_config: str, description: str) -> int:
        created = self._sdk.projects.create(title=title, label_config=label_config, description=description)
        return int(created.id)

    @_with_retries
    def get_project(self, project_id: int) -> dict:
        return _dump(self._sdk.projects.get(id=project_id))

    def project_url(self, project_id: int) -> str:
        return f"{self.url}/projects/{project_id}/data"

    @_with_retries
    def set_model_version(self, project_id: int, model_version: str) -> None:
        """Choose which predictions pre-fill the labeling UI (LS does not do it on import; gotcha 13)."""
        self._sdk.projects.update(id=project_id, model_version=model_version)

    @_with_retries
    def ensure_local_storage(self, project_id: int, path: str) -> int:
        """Attach a Local Files import storage over absolute folder `path` (no sync), once per project.

        Without it `/data/local-files/?d=...` URLs answer 404 (notes/label-studio.md §4).
        """
        for storage in self._sdk.import_storage.local.list(project=project_id):
            if storage.path == path:
                return int(storage.id)
        created = self._sdk.import_storage.local.create(
            project=project_id, path=path, use_blob_urls=True, title=f"flywheel media {path}"[:200]
        )
        return int(created.id)

    # tasks

    def _iter_tasks(self, project_id: int, query: dict | None = None, fields: str = "all"):
        pager = self._sdk.tasks.list(
            project=project_id,
            fields=fields,
            page_size=1000,
            query=json.dumps(query) if query else None,
        )
        yield from pager

    @_with_retries
    def task_ids_by_record(self, project_id: int) -> dict[str, int]:
        """record_id -> task id for the tasks already in the project (tasks without record_id are ignored)."""
        out: dict[str, int] = {}
        for task in self._iter_tasks(project_id, fields="task_only"):
            record_id = (task.data or {}).get("record_id")
            if record_id is not None:
                out[str(record_id)] = int(task.id)
        return out

    @_with_retries
    def import_tasks(self, project_id: int, tasks: list[dict]) -> list[int]:
        """Import tasks in one call; returns their ids in input order."""
        if not tasks:
            return []
        response = self._sdk.projects.import_tasks(id=project_id, request=tasks, return_task_ids=True)
        ids = list(getattr(response, "task_ids", None) or [])
        if len(ids) != len(tasks):
            raise LabelStudioApiError(f"imported {len(tasks)} tasks but Label Studio returned {len(ids)} ids")
        return [int(i) for i in ids]

    @_with_retries
    def import_predictions(self, project_id: int, predictions: list[dict]) -> int:
        """Bulk-import predictions ({task, model_version, score, result}); returns how many were created."""
        if not predictions:
            return 0
        response = self._sdk.projects.import_predictions(id=project_id, request=predictions)
        created = getattr(response, "created", None)
        return int(created) if created is not None else len(predictions)

    @_with_retries
    def task_count(self, project_id: int) -> int:
        project = self._sdk.projects.get(id=project_id)
        return int(project.task_number or 0)

    @_with_retries
    def list_tasks(self, project_id: int) -> list[dict]:
        """Every task with its data, predictions and annotations (for checks; slow on big projects)."""
        out = []
        for task in self._iter_tasks(project_id):
            raw = _dump(task)
            out.append(
                {
                    "id": raw["id"],
                    "data": raw.get("data") or {},
                    "predictions": [
                        {k: p.get(k) for k in ("id", "model_version", "score", "result")}
                        for p in raw.get("predictions") or []
                    ],
                    "annotations": [_annotation_dict(a) for a in raw.get("annotations") or []],
                }
            )
        return out

    @_with_retries
    def list_annotated_tasks(self, project_id: int, since: datetime | None = None) -> list[dict]:
        """Tasks with at least one annotation (Data Manager filter; `only_annotated` is ignored by the server).

        With `since`, only tasks whose `updated_at` is at or after `since - WATERMARK_MARGIN_S`; Label
        Studio bumps a task's updated_at when an annotation on it is created or updated. Each task is
        {"id", "data", "annotations": [{id, completed_by, result, created_at, updated_at, lead_time,
        was_cancelled}]}.
        """
        items = [Filters.item(Column.total_annotations, Operator.GREATER, Type.Number, Filters.value(0))]
        if since is not None:
            if since.tzinfo is None:
                raise ValueError("since must be timezone-aware (UTC)")
            start = since.astimezone(UTC).timestamp() - WATERMARK_MARGIN_S
            items.append(
                Filters.item(
                    Column.updated_at,
                    Operator.GREATER_OR_EQUAL,
                    Type.Datetime,
                    Filters.value(Filters.datetime(datetime.fromtimestamp(start, UTC))),
                )
            )
        query = {"filters": Filters.create(Filters.AND, items)}
        out = []
        for task in self._iter_tasks(project_id, query=query):
            raw = _dump(task)
            out.append(
                {
                    "id": raw["id"],
                    "data": raw.get("data") or {},
                    "annotations": [_annotation_dict(a) for a in raw.get("annotations") or []],
                }
            )
        return out

    # users and annotations

    @_with_retries
    def ensure_user(self, username: str, email: str) -> int:
        """The id of the user with `email`, created (without a login password; gotcha 10) if absent."""
        for user in self._sdk.users.list():
            if (user.email or "").lower() == email.lower():
                return int(user.id)
        created = self._sdk.users.create(username=username, email=email, first_name=username)
        return int(created.id)

    @_with_retries
    def create_annotation(self, task_id: int, user_id: int, result: list[dict], lead_time: float) -> int:
        """Post an annotation on behalf of `user_id` (the admin token may do so); returns its id."""
        created = self._sdk.annotations.create(id=task_id, completed_by=user_id, result=result, lead_time=lead_time)
        return int(created.id)

    @_with_retries
    def update_annotation(self, annotation_id: int, result: list[dict]) -> None:
        """Replace an annotation's result (as an annotator fixing their label would)."""
        self._sdk.annotations.update(id=annotation_id, result=result)

    @_with_retries
    def delete_annotation(self, annotation_id: int) -> None:
        self._sdk.annotations.delete(id=annotation_id)

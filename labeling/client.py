"""The one door to Label Studio: a thin, retrying wrapper over label-studio-sdk 2.x returning plain Python types."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError
from label_studio_sdk.data_manager import Column, Filters, Operator, Type

from labeling.client_retries import LabelStudioApiError, is_retryable, retrying
from labeling.label_config import config_labels

__all__ = ["LabelStudioApiError", "LabelStudioClient", "ProjectLabelsMismatch", "is_retryable"]

# Margin subtracted from the incremental-pull watermark, so clock skew between the server's stored
# timestamps and the moment of the previous pull cannot skip an annotation; duplicates are removed later.
WATERMARK_MARGIN_S = 5.0


class ProjectLabelsMismatch(ValueError):
    """A project with the wanted title exists but labels another set of classes: one project per dataset and
    label schema, so it is never reused for a different set."""


_with_retries = retrying((ApiError, httpx.HTTPError))  # the one retry policy of every call below


def _with_tries(tries: int | None) -> Callable[[Any], Any]:
    """`_with_retries` with a fixed number of tries (None = the client's own)."""
    return retrying((ApiError, httpx.HTTPError), tries)


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

    def __init__(self, url: str, token: str, timeout: float = 120, *, max_tries: int | None = None) -> None:
        self.url = url.rstrip("/")
        # Tries per call; None = MAX_TRIES, read at call time (tests lower it).
        self.max_tries = max_tries
        # The SDK's own retries are off: _with_retries is the one retry policy, so tries do not multiply.
        self._sdk = LabelStudio(base_url=self.url, api_key=token, timeout=timeout, max_retries=0)
        # Tasks per listing page: 1000 was the fastest measured (notes/label-studio.md §7).
        self.page_size = 1000

    def __repr__(self) -> str:
        return f"LabelStudioClient({self.url!r})"

    def with_tries(self, tries: int) -> LabelStudioClient:
        """This client making `tries` tries per call, for a caller that runs a retry loop of its own: one
        layer of retries, never two multiplying each other."""
        if tries < 1:
            raise ValueError(f"tries must be >= 1, got {tries}")
        clone = copy.copy(self)
        clone.max_tries = tries
        return clone

    # projects

    @_with_retries
    def find_project(self, title: str) -> int | None:
        """The id of the project titled exactly `title`, or None."""
        for project in self._sdk.projects.list(title=title, page_size=100):
            if project.title == title:
                return int(project.id)
        return None

    def ensure_project(self, title: str, label_config: str, *, description: str = "") -> int:
        """The id of the project titled `title`, created with `label_config` if there is none.

        An existing project whose config chooses among another set of labels raises ProjectLabelsMismatch
        (the order of labels and the rest of the config may differ: only the set of Choice values counts).
        """
        if len(title) < 3:
            raise ValueError(f"Label Studio needs project titles of at least 3 characters; got {title!r}")
        existing = self.find_project(title)
        if existing is None:
            return self._create_project(title, label_config, description)
        wanted = config_labels(label_config)
        have = config_labels(self.get_project(existing).get("label_config") or "")
        if set(have) != set(wanted):
            raise ProjectLabelsMismatch(
                f"Label Studio project {title!r} (id {existing}) labels {sorted(have)}, not {sorted(wanted)}: "
                "one project per dataset and label schema; use a new project title for the new label set"
            )
        return existing

    @_with_retries
    def _create_project(self, title: str, label_config: str, description: str) -> int:
        created = self._sdk.projects.create(title=title, label_config=label_config, description=description)
        return int(created.id)

    @_with_retries
    def get_project(self, project_id: int) -> dict:
        return _dump(self._sdk.projects.get(id=project_id))

    def project_url(self, project_id: int, view_id: int | None = None) -> str:
        """The project's Data Manager, opened on tab `view_id` when given."""
        tab = f"?tab={int(view_id)}" if view_id is not None else ""
        return f"{self.url}/projects/{project_id}/data{tab}"

    @_with_retries
    def set_instructions(self, project_id: int, html: str, *, show: bool = True) -> None:
        """Set the project's labeling instructions (HTML), shown to each annotator before labeling when `show`."""
        self._sdk.projects.update(id=project_id, expert_instruction=html, show_instruction=show)

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

    @_with_retries
    def ensure_s3_storage(
        self,
        project_id: int,
        *,
        bucket: str,
        prefix: str,
        endpoint_url: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        region: str | None = None,
    ) -> int:
        """Attach an S3 import storage over `s3://bucket/prefix` (never synced), once per project.

        Label Studio then resolves tasks' `s3://bucket/...` image URIs through it. Presigning is off, so
        Label Studio reads the object and serves the bytes itself: the annotator's browser needs no route
        to the object store and the bucket no CORS rules. Label Studio validates the storage by listing
        at least one object under `prefix`. Unset credentials leave Label Studio to boto's own chain.
        """
        for storage in self._sdk.import_storage.s3.list(project=project_id):
            if storage.bucket == bucket and (storage.prefix or "") == prefix:
                return int(storage.id)
        options = {
            "s3endpoint": endpoint_url,
            "aws_access_key_id": access_key_id,
            "aws_secret_access_key": secret_access_key,
            "region_name": region,
        }
        created = self._sdk.import_storage.s3.create(
            project=project_id,
            bucket=bucket,
            prefix=prefix,
            presign=False,
            use_blob_urls=True,
            regex_filter=r".*\.(jpe?g|png)$",  # a sync by hand in the UI would import images only
            title=f"flywheel media s3://{bucket}/{prefix}"[:200],
            **{k: v for k, v in options.items() if v},
        )
        return int(created.id)

    # tasks

    def _iter_tasks(self, project_id: int, query: dict | None = None, fields: str = "all"):
        pager = self._sdk.tasks.list(
            project=project_id,
            fields=fields,
            page_size=self.page_size,
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

    def import_tasks(self, project_id: int, tasks: list[dict], *, retry: bool = True) -> list[int]:
        """Import tasks in one call (predictions may ride inline); returns their ids in input order.

        An import is not idempotent: a retry after a lost response can duplicate the batch. Callers that
        must never duplicate pass retry=False and reconcile themselves (labeling.sync.push_tasks does).
        """
        return _with_tries(None if retry else 1)(LabelStudioClient._import_once)(self, project_id, tasks)

    def _import_once(self, project_id: int, tasks: list[dict]) -> list[int]:
        if not tasks:
            return []
        response = self._sdk.projects.import_tasks(id=project_id, request=tasks, return_task_ids=True)
        ids = list(getattr(response, "task_ids", None) or [])
        if len(ids) != len(tasks):
            raise LabelStudioApiError(f"imported {len(tasks)} tasks but Label Studio returned {len(ids)} ids")
        return [int(i) for i in ids]

    @_with_retries
    def task_ids_after(self, project_id: int, task_id: int) -> dict[str, int]:
        """record_id -> task id for the project's tasks with an id above `task_id` (ids only grow)."""
        newer = Filters.item(Column.id, Operator.GREATER, Type.Number, Filters.value(int(task_id)))
        query = {"filters": Filters.create(Filters.AND, [newer])}
        out: dict[str, int] = {}
        for task in self._iter_tasks(project_id, query=query, fields="task_only"):
            record_id = (task.data or {}).get("record_id")
            if record_id is not None:
                out[str(record_id)] = int(task.id)
        return out

    @_with_retries
    def configure_queue(self, project_id: int, *, show_overlap_first: bool = True) -> None:
        """Project settings under which per-task overlaps (set_task_overlaps) are what the queue obeys.

        maximum_annotations=1 and overlap_cohort_percentage=100: Label Studio imports every task with
        overlap = maximum_annotations (an `overlap` key in the import is ignored), and with a cohort under
        100 % it re-draws every task's overlap on each import, undoing per-task values. Call it before the
        first push, once: changing maximum_annotations later resets every task with overlap > 1 to it.
        `show_overlap_first` serves tasks with overlap > 1 (gold, overlapped) before the rest.
        """
        self._sdk.projects.update(
            id=project_id,
            maximum_annotations=1,
            overlap_cohort_percentage=100,
            show_overlap_first=show_overlap_first,
        )

    def set_task_overlaps(self, overlaps: dict[int, int]) -> int:
        """Set each task's `overlap` (task id -> distinct annotators wanted); returns how many were set.

        The labeling queue (GET /api/projects/<id>/next) serves a task until that many distinct people have
        annotated it and never serves it twice to one person. One PATCH per task (~100 ms), so pass only the
        tasks whose overlap is not the project's 1 (labeling.queue.overlaps_to_set). Meant for just-imported
        tasks: the queue may have served one to somebody between the import (overlap 1) and this call, and Label
        Studio does not recompute is_labeled when the overlap changes, so a raised overlap also clears it (the
        task has fewer annotations than its new overlap), or the queue would never serve it again.
        """
        for task_id, overlap in overlaps.items():
            if overlap < 1:
                raise ValueError(f"task {task_id}: overlap must be >= 1, got {overlap}")
            fields: dict[str, Any] = {"overlap": int(overlap)}
            if overlap > 1:
                fields["is_labeled"] = False
            self._patch_task(int(task_id), **fields)
        return len(overlaps)

    @_with_retries
    def _patch_task(self, task_id: int, **fields: Any) -> None:
        self._sdk.tasks.update(id=str(task_id), **fields)

    @_with_retries
    def task_overlaps(self, project_id: int) -> dict[int, int]:
        """task id -> its overlap, for every task of the project."""
        return {int(t.id): int(t.overlap or 1) for t in self._iter_tasks(project_id, fields="task_only")}

    @_with_retries
    def update_task_data(self, task_id: int, fields: dict[str, Any]) -> None:
        """Merge `fields` into a task's data (e.g. the review reasons and aggregated label the review tab shows).

        Label Studio replaces a task's data wholesale on PATCH, so the current data is read first.
        """
        current = _dump(self._sdk.tasks.get(id=str(task_id))).get("data") or {}
        self._sdk.tasks.update(id=str(task_id), data={**current, **fields})

    @_with_retries
    def ensure_view(
        self,
        project_id: int,
        title: str,
        task_ids: list[int],
        *,
        hidden_columns: list[str] | None = None,
        first: bool = False,
    ) -> int:
        """A Data Manager tab titled `title` showing exactly `task_ids` (created, or its filter replaced).

        The review queue: reviewers open this tab in the project. Sorted by priority, highest first.
        `hidden_columns` are Data Manager column ids ("tasks:data.record_id", "tasks:annotators", ...;
        labeling.views builds them) hidden both in the table and beside the labeling screen; None leaves
        Label Studio's defaults. `first` moves the tab to the front: the project opens on its first tab.
        """
        items = [
            {"filter": "filter:tasks:id", "operator": "equal", "type": "Number", "value": int(t)} for t in task_ids
        ]
        if not items:
            # An empty OR matches everything in Label Studio; match nothing instead.
            items = [{"filter": "filter:tasks:id", "operator": "equal", "type": "Number", "value": -1}]
        data: dict[str, Any] = {
            "title": title,
            "filters": {"conjunction": "or", "items": items},
            "ordering": ["-tasks:data.priority"],
        }
        if hidden_columns is not None:
            data["hiddenColumns"] = {"explore": list(hidden_columns), "labeling": list(hidden_columns)}
        views = [_dump(v) for v in self._sdk.views.list(project=project_id)]
        view_id = None
        for view in views:
            if (view.get("data") or {}).get("title") == title:
                self._sdk.views.update(id=str(view["id"]), data=data, project=project_id)
                view_id = int(view["id"])
                break
        if view_id is None:
            view_id = int(self._sdk.views.create(data=data, project=project_id).id)
        if first:
            others = [int(v["id"]) for v in views if int(v["id"]) != view_id]
            self._sdk.views.update_order(ids=[view_id, *others], project=project_id)
        return view_id

    @_with_retries
    def views(self, project_id: int) -> list[dict]:
        """The project's Data Manager tabs in the order the UI shows them: [{"id", "title", "data"}]."""
        out = []
        for view in self._sdk.views.list(project=project_id):
            raw = _dump(view)
            out.append({"id": int(raw["id"]), "title": (raw.get("data") or {}).get("title"), "data": raw.get("data")})
        return out

    @_with_retries
    def view_task_ids(self, project_id: int, view_id: int) -> list[int]:
        """The ids of the tasks a Data Manager tab shows."""
        pager = self._sdk.tasks.list(project=project_id, view=view_id, fields="task_only", page_size=self.page_size)
        return [int(t.id) for t in pager]

    @_with_retries
    def ensure_webhook(
        self,
        project_id: int,
        url: str,
        *,
        actions: tuple[str, ...] = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"),
        headers: dict[str, str] | None = None,
    ) -> int:
        """A project webhook POSTing to `url` on `actions`, created once per url.

        A loopback `url` needs the server's SSRF protection off (notes/label-studio.md §6; LabelStudioServer does it).
        """
        for hook in self._sdk.webhooks.list(project=project_id):
            if hook.url == url:
                return int(hook.id)
        created = self._sdk.webhooks.create(
            url=url,
            project=project_id,
            send_payload=True,
            send_for_all_actions=False,
            actions=list(actions),
            headers=headers or {},
        )
        return int(created.id)

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
        """Tasks with an annotation or a skip (Data Manager filters; `only_annotated` is ignored by the server).

        With `since`, only tasks whose `updated_at` is at or after `since - WATERMARK_MARGIN_S`; Label
        Studio bumps a task's updated_at when an annotation on it is created or updated. Each task is
        {"id", "data", "annotations": [{id, completed_by, result, created_at, updated_at, lead_time,
        was_cancelled}]}.
        """
        recent = []
        if since is not None:
            if since.tzinfo is None:
                raise ValueError("since must be timezone-aware (UTC)")
            start = since.astimezone(UTC).timestamp() - WATERMARK_MARGIN_S
            recent.append(
                Filters.item(
                    Column.updated_at,
                    Operator.GREATER_OR_EQUAL,
                    Type.Datetime,
                    Filters.value(Filters.datetime(datetime.fromtimestamp(start, UTC))),
                )
            )
        out: dict[int, dict] = {}
        # Two listings: total_annotations leaves skips out, so a task only skipped has 0 and needs the second.
        for counted in (Column.total_annotations, Column.cancelled_annotations):
            items = [Filters.item(counted, Operator.GREATER, Type.Number, Filters.value(0)), *recent]
            query = {"filters": Filters.create(Filters.AND, items)}
            # Not `include="id,data,annotations"`: it halves listing time but the server then returns annotations
            # without their result or completed_by (seen against 1.23.2), so every field is asked for.
            for task in self._iter_tasks(project_id, query=query):
                raw = _dump(task)
                out[raw["id"]] = {
                    "id": raw["id"],
                    "data": raw.get("data") or {},
                    "annotations": [_annotation_dict(a) for a in raw.get("annotations") or []],
                }
        return list(out.values())

    @_with_retries
    def export_json(self, project_id: int, timeout_s: int = 600) -> list[dict]:
        """The SDK's full JSON export (every task with annotations and predictions): the baseline the
        incremental pull is measured against in bench/sync.py; it costs ~3 ms per task (notes §7)."""
        return list(self._sdk.projects.exports.as_json(project_id, timeout=timeout_s))

    # users and annotations

    @_with_retries
    def user_names(self) -> dict[int, str]:
        """user id -> how people know them: the username, or the email when the username is empty
        (users created by signup get the local part of their email as username; the first admin has none)."""
        return {int(u.id): (u.username or u.email or str(u.id)) for u in self._sdk.users.list()}

    @_with_retries
    def invite_url(self) -> str:
        """The organization's signup link: a person who opens it creates their own login (the only way to
        sign up when the server runs with signup by invite link only)."""
        invite = self._sdk.organizations.invites.get_invite_link()
        return f"{self.url}/user/signup/?token={invite.token}"

    @_with_retries
    def ensure_user(self, username: str, email: str) -> int:
        """The id of the user with `email`, created (without a login password; gotcha 10) if absent."""
        for user in self._sdk.users.list():
            if (user.email or "").lower() == email.lower():
                return int(user.id)
        created = self._sdk.users.create(username=username, email=email, first_name=username)
        return int(created.id)

    @_with_retries
    def create_annotation(
        self, task_id: int, user_id: int, result: list[dict], lead_time: float, *, skipped: bool = False
    ) -> int:
        """Post an annotation on behalf of `user_id` (the admin token may do so); returns its id. `skipped`
        posts what Label Studio's Skip button does: an empty, cancelled annotation."""
        created = self._sdk.annotations.create(
            id=task_id, completed_by=user_id, result=result, lead_time=lead_time, was_cancelled=skipped
        )
        return int(created.id)

    @_with_retries
    def update_annotation(self, annotation_id: int, result: list[dict]) -> None:
        """Replace an annotation's result (as an annotator fixing their label would)."""
        self._sdk.annotations.update(id=annotation_id, result=result)

    @_with_retries
    def delete_annotation(self, annotation_id: int) -> None:
        self._sdk.annotations.delete(id=annotation_id)

"""Label Studio tasks from records: media files under the data root, task dicts and their pre-annotations."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from corpus.schema import PREDICTION_SCHEMA
from corpus.settings import Settings
from corpus.store import DataRoot
from labeling.box_predictions import build_box_predictions

if TYPE_CHECKING:  # the client is passed in; this module stays free of the Label Studio SDK
    from labeling.client import LabelStudioClient

MEDIA_DIR = "media"
# Label Studio refuses an S3 import storage whose prefix holds no object; this marker is one.
MEDIA_MARKER = f"{MEDIA_DIR}/.flywheel-media"
_EXTENSIONS = {"image/jpeg": "jpg", "image/jpg": "jpg", "image/png": "png"}


def _extension(mime: str | None, data: bytes) -> str:
    if mime and mime.lower() in _EXTENSIONS:
        return _EXTENSIONS[mime.lower()]
    # Sniff when the mime is missing or unexpected; scrubbing re-encodes to JPEG or PNG.
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    raise ValueError(f"unsupported image type (mime {mime!r}); expected JPEG or PNG")


def export_media(root: DataRoot, table: pa.Table) -> dict[str, str]:
    """Write each image row's bytes to `media/<record_id>.<jpg|png>` under `root`; skip files already there.

    Returns record_id -> path relative to the root. Rows of another kind, or with no image bytes,
    are left out of the result (they cannot become image tasks). An unknown image type raises
    ValueError naming the record.
    """
    missing = [c for c in ("record_id", "image") if c not in table.column_names]
    if missing:
        raise ValueError(f"table lacks columns {missing}")
    ids = table.column("record_id").to_pylist()
    kinds = table.column("kind").to_pylist() if "kind" in table.column_names else ["image"] * table.num_rows
    mimes = table.column("mime").to_pylist() if "mime" in table.column_names else [None] * table.num_rows
    existing = set(root.list(MEDIA_DIR))
    paths: dict[str, str] = {}
    images = table.column("image")
    for i, record_id in enumerate(ids):
        if kinds[i] != "image":
            continue
        data = images[i].as_py()
        if not data:
            continue
        try:
            ext = _extension(mimes[i], data)
        except ValueError as exc:
            raise ValueError(f"record {record_id}: {exc}") from exc
        relpath = f"{MEDIA_DIR}/{record_id}.{ext}"
        if relpath not in existing:
            root.write_bytes(relpath, data)
            existing.add(relpath)
        paths[record_id] = relpath
    return paths


def local_files_url(relpath: str) -> str:
    """How a task names a media file under a local data root: Label Studio's local-files serving, whose
    document root is the data root."""
    return f"/data/local-files/?d={relpath}"


def media_uri(root: DataRoot, relpath: str) -> str:
    """The image field of a task for the media file `relpath`: a local-files URL for a local root, the
    object's `s3://bucket/key` for an object-store root (resolved by the project's S3 storage)."""
    return local_files_url(relpath) if root.is_local else root.uri(relpath)


def media_location(root: DataRoot) -> tuple[str, str]:
    """(bucket, key prefix ending in "/") of the media folder of an object-store root."""
    if root.is_local:
        raise ValueError(f"{root.url} is a local folder, not object storage")
    bucket, _, key = root.path(MEDIA_DIR).partition("/")
    return bucket, key.rstrip("/") + "/"


def attach_media(client: LabelStudioClient, root: DataRoot, project_id: int, settings: Settings) -> int:
    """Let Label Studio serve `root`'s media to annotators, once per project; returns the storage id.

    A local root gets Local Files storage over its media folder. An s3:// root gets Label Studio's own S3
    storage over the same bucket, with the endpoint and credentials the flows use (from settings, never
    from a parameter); it is never synced: tasks hold `s3://` URIs that it resolves and proxies.
    """
    if root.is_local:
        media = Path(root.local_path(MEDIA_DIR))
        media.mkdir(parents=True, exist_ok=True)
        return client.ensure_local_storage(project_id, str(media))
    if not root.url.startswith(("s3://", "s3a://")):
        raise NotImplementedError(f"Label Studio media on {root.url}: only local and s3:// data roots are supported")
    if not root.list(MEDIA_DIR):
        root.write_bytes(MEDIA_MARKER, b"Label Studio's S3 storage over this folder needs one object to exist.\n")
    bucket, prefix = media_location(root)
    secret = settings.s3_secret_access_key
    return client.ensure_s3_storage(
        project_id,
        bucket=bucket,
        prefix=prefix,
        endpoint_url=settings.s3_endpoint_url,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=secret.get_secret_value() if secret else None,
        region=settings.s3_region,
    )


def build_tasks(
    table: pa.Table,
    media_paths: dict[str, str],
    *,
    priorities: dict[str, float] | None = None,
    predictions: pa.Table | None = None,
    labels: list[str] | None = None,
    model_version: str | None = None,
    media_url: Callable[[str], str] = local_files_url,
    task: str = "classify",
) -> list[dict]:
    """One Label Studio task per row whose record has a media file; `media_url` turns the file's path
    under the data root into the task's image field (see `media_uri`).

    `priorities` (record_id -> score in [0, 1], 1 = label first) goes into task data so the Data
    Manager can sort by it; a missing priority is null. With `predictions` (PREDICTION_SCHEMA),
    `labels` and `model_version`, each task carries its record's prediction inline, so task and
    pre-annotation arrive in one import (labeling.sync.push_tasks) and can never be half-pushed. A
    `model_version` column in `predictions` (labeling.preannotations) names each row's version instead.
    For `task` "detect" the pre-annotations are the predicted boxes (labeling.box_predictions).
    """
    inline: dict[str, dict] = {}
    if predictions is not None:
        per_row = "model_version" in predictions.column_names
        if labels is None or not (model_version or per_row):
            raise ValueError("inline predictions need labels and model_version")
        ids = predictions.column("record_id").to_pylist()
        fake_ids = {rid: i for i, rid in enumerate(ids)}
        builder = build_box_predictions if task == "detect" else build_predictions
        for payload in builder(fake_ids, predictions, labels, model_version):
            inline[ids[payload.pop("task")]] = payload
    if "record_id" not in table.column_names:
        raise ValueError("table lacks column record_id")
    n = table.num_rows
    ids = table.column("record_id").to_pylist()
    captions = table.column("caption").to_pylist() if "caption" in table.column_names else [None] * n
    pages = table.column("page_url").to_pylist() if "page_url" in table.column_names else [None] * n
    priorities = priorities or {}
    tasks = []
    for record_id, caption, page_url in zip(ids, captions, pages, strict=True):
        relpath = media_paths.get(record_id)
        if relpath is None:
            continue
        priority = priorities.get(record_id)
        task: dict = {
            "data": {
                "image": media_url(relpath),
                "record_id": record_id,
                "caption": caption or "",
                "page_url": page_url or "",
                "priority": None if priority is None else float(priority),
            }
        }
        if record_id in inline:
            task["predictions"] = [inline[record_id]]
        tasks.append(task)
    return tasks


def build_predictions(
    task_ids_by_record: dict[str, int],
    predictions: pa.Table,
    labels: list[str],
    model_version: str | None,
    *,
    from_name: str = "label",
    to_name: str = "image",
) -> list[dict]:
    """Label Studio prediction dicts (choices result, score = confidence) for records that have a task.

    `predictions` follows PREDICTION_SCHEMA; a `model_version` column, where it has a value, names that row's
    version instead of `model_version`. A predicted label outside `labels` raises ValueError, since Label
    Studio would store it but the UI could not show it.
    """
    missing = [c for c in ("record_id", "predicted_label", "confidence") if c not in predictions.column_names]
    if missing:
        raise ValueError(f"predictions lack columns {missing} (see PREDICTION_SCHEMA: {PREDICTION_SCHEMA.names})")
    known = set(labels)
    out = []
    n = predictions.num_rows
    versions = (
        predictions.column("model_version").to_pylist() if "model_version" in predictions.column_names else [None] * n
    )
    rows = zip(
        predictions.column("record_id").to_pylist(),
        predictions.column("predicted_label").to_pylist(),
        predictions.column("confidence").to_pylist(),
        versions,
        strict=True,
    )
    for record_id, label, confidence, row_version in rows:
        task_id = task_ids_by_record.get(record_id)
        if task_id is None or label is None:
            continue
        if label not in known:
            raise ValueError(f"record {record_id}: predicted label {label!r} is not one of {labels}")
        out.append(
            {
                "task": int(task_id),
                "model_version": row_version or model_version,
                "score": float(confidence) if confidence is not None else None,
                "result": [
                    {"from_name": from_name, "to_name": to_name, "type": "choices", "value": {"choices": [label]}}
                ],
            }
        )
    return out

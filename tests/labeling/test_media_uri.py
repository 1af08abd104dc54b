"""How tasks name their images: local-files URLs under a local root, s3:// URIs under an s3 root."""

from __future__ import annotations

import pyarrow as pa
import pytest

from corpus.store import DataRoot
from labeling.studio_tasks import build_tasks, local_files_url, media_location, media_uri


def test_local_root_tasks_use_local_files_urls(tmp_path):
    root = DataRoot(str(tmp_path))
    assert media_uri(root, "media/a.jpg") == local_files_url("media/a.jpg") == "/data/local-files/?d=media/a.jpg"
    with pytest.raises(ValueError, match="local folder"):
        media_location(root)


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://bkt/flywheel", "bkt", "flywheel/media/"),
        ("s3://bkt", "bkt", "media/"),
        ("s3://bkt/a/b/", "bkt", "a/b/media/"),
    ],
)
def test_s3_root_tasks_use_object_uris(url, bucket, prefix):
    root = DataRoot(url, {"anon": True})  # no request is made: only paths are computed
    assert media_location(root) == (bucket, prefix)
    assert media_uri(root, "media/r1.jpg") == f"s3://{bucket}/{prefix}r1.jpg"
    table = pa.table({"record_id": ["r1"], "caption": ["c"], "page_url": ["p"]})
    tasks = build_tasks(table, {"r1": "media/r1.jpg"}, media_url=lambda rel: media_uri(root, rel))
    assert tasks[0]["data"]["image"] == f"s3://{bucket}/{prefix}r1.jpg"

"""Create the data root's bucket on the S3-compatible store, once; the compose stack runs it before the worker."""

from __future__ import annotations

import os
import sys
import time
from urllib.parse import urlsplit

import s3fs
from botocore.exceptions import BotoCoreError


def bucket_of(data_root: str) -> str:
    """The bucket of an s3:// data root (s3://bucket/prefix -> bucket)."""
    parts = urlsplit(data_root)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"FLYWHEEL_DATA_ROOT must be s3://bucket[/prefix] here; got {data_root!r}")
    return parts.netloc


def create_bucket(timeout_s: float = 120) -> str:
    """Create the bucket of FLYWHEEL_DATA_ROOT with the FLYWHEEL_S3_* settings; waits for the store to answer.

    An existing bucket is fine (a rerun of the stack); any other refusal (credentials, a bad name) fails at once.
    """
    bucket = bucket_of(os.environ["FLYWHEEL_DATA_ROOT"])
    fs = s3fs.S3FileSystem(
        key=os.environ["FLYWHEEL_S3_ACCESS_KEY_ID"],
        secret=os.environ["FLYWHEEL_S3_SECRET_ACCESS_KEY"],
        endpoint_url=os.environ["FLYWHEEL_S3_ENDPOINT_URL"],
    )
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            # CreateBucket without a LocationConstraint: s3fs's mkdir sends the client's region as one, which
            # S3 itself refuses for us-east-1.
            fs.call_s3("create_bucket", Bucket=bucket)
            return bucket
        except FileExistsError:  # BucketAlreadyOwnedByYou
            return bucket
        except BotoCoreError as error:  # no connection yet: the store is still starting
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer from {os.environ['FLYWHEEL_S3_ENDPOINT_URL']}: {error}") from error
            time.sleep(2)


if __name__ == "__main__":
    print(f"bucket {create_bucket()} is ready", file=sys.stderr)

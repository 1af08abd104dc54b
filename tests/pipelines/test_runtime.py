"""Retries only on I/O that can heal: the retry condition judged by the Label Studio client's own rules."""

from __future__ import annotations

import httpx
import pytest
from label_studio_sdk.core.api_error import ApiError

from labeling.client import LabelStudioApiError
from pipelines.runtime import artifact_key, is_transient, split_into_batches


def _api_error(status: int | None) -> LabelStudioApiError:
    try:
        raise ApiError(status_code=status, body={"detail": "x"})
    except ApiError as cause:
        error = LabelStudioApiError(f"status {status}")
        error.__cause__ = cause
        return error


def _status_error(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "http://127.0.0.1/x")
    return httpx.HTTPStatusError("x", request=request, response=httpx.Response(status, request=request))


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (_api_error(401), False),  # a wrong token never heals
        (_api_error(403), False),
        (_api_error(404), False),
        (_api_error(400), False),
        (_api_error(500), True),
        (_api_error(503), True),
        (_api_error(429), True),
        (_api_error(None), True),  # no status: the connection itself failed
        (LookupError("no such project"), False),
        (FileNotFoundError("raw/nope"), False),
        (PermissionError("read-only"), False),
        (ValueError("bad release reference"), False),
        (KeyError("record_id"), False),
        (RuntimeError("stage lost rows"), False),
        (ConnectionResetError(), True),
        (TimeoutError(), True),
        (OSError("storage hiccup"), True),
        (httpx.ConnectError("refused"), True),
        (httpx.ReadTimeout("slow"), True),
        (_status_error(502), True),
        (_status_error(404), False),
    ],
)
def test_only_transient_errors_are_retried(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_artifact_keys_are_what_prefect_accepts() -> None:
    assert artifact_key("stage", "Curate_v2.1") == "stage-curate-v2-1"


@pytest.mark.parametrize(
    ("pieces", "batches", "dealt"),
    [
        (8, 2, [[0, 2, 4, 6], [1, 3, 5, 7]]),
        (8, 4, [[0, 4], [1, 5], [2, 6], [3, 7]]),
        (7, 3, [[0, 3, 6], [1, 4], [2, 5]]),
        (2, 5, [[0], [1]]),
        (1, 1, [[0]]),
        (0, 2, []),
    ],
)
def test_pieces_are_dealt_into_batches_like_cards(pieces: int, batches: int, dealt: list[list[int]]) -> None:
    cut = split_into_batches([(k,) for k in range(pieces)], batches)
    assert cut == dealt
    assert sorted(i for b in cut for i in b) == list(range(pieces))  # every piece once


def test_a_run_of_costly_neighbours_is_shared_out_not_given_to_one_batch() -> None:
    # an input whose first half is images (costly to scrub) and second half pages, as a crawl's or an import's is
    costs = [10] * 4 + [1] * 4
    per_batch = [sum(costs[i] for i in b) for b in split_into_batches([(c,) for c in costs], 2)]
    assert max(per_batch) / min(per_batch) < 1.01

"""The client's one retry layer: which Label Studio errors heal on their own, and how long to keep trying."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

# 5 tries with 0.5 s doubling backoff spans ~7.5 s: enough to ride out a dev-server restart or a
# SQLite "database is locked" 5xx (seen under concurrent writes), short enough to fail a flow fast.
MAX_TRIES = 5
BACKOFF_S = 0.5


class LabelStudioApiError(RuntimeError):
    """A Label Studio call failed for good (after retries, or with a 4xx that retrying cannot fix)."""


def _retryable(exc: BaseException) -> bool:
    status = getattr(exc, "status_code", None)
    if isinstance(exc, httpx.HTTPError):
        return isinstance(exc, httpx.TransportError)
    # An SDK error: no status means the request never got an answer.
    return status is None or status >= 500 or status == 429


def is_retryable(exc: BaseException) -> bool:
    """True when a failed call may succeed if sent again (connection lost, 429, 5xx); a 4xx never is."""
    cause = exc.__cause__ if isinstance(exc, LabelStudioApiError) else exc
    return cause is not None and _retryable(cause)


def retrying(errors: tuple[type[BaseException], ...], tries: int | None = None) -> Callable[[F], F]:
    """A decorator for client methods: retry on the `errors` that is_retryable judges healable, with doubling
    backoff from BACKOFF_S; the final error becomes LabelStudioApiError (status and body only, never the
    token). Tries: `tries`, else the client's `max_tries`, else MAX_TRIES (read at call time)."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            own = getattr(args[0], "max_tries", None) if args else None
            max_tries = tries if tries is not None else own if own is not None else MAX_TRIES
            for attempt in range(1, max_tries + 1):
                try:
                    return func(*args, **kwargs)
                except errors as exc:
                    status = getattr(exc, "status_code", None)
                    if attempt == max_tries or not _retryable(exc):
                        body = getattr(exc, "body", None)
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

    return decorate

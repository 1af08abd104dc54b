"""One layer of retries: the client's tries per call, and a copy with its own count for callers with a loop."""

from __future__ import annotations

import socket

import pytest

import labeling.client_retries as client_module
from labeling.client import LabelStudioApiError, LabelStudioClient


@pytest.fixture()
def dead_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: every connection is refused at once
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_with_tries_changes_only_the_copy(dead_url, monkeypatch) -> None:
    monkeypatch.setattr(client_module, "BACKOFF_S", 0.01)
    client = LabelStudioClient(dead_url, "secret-token-123", timeout=2)
    once = client.with_tries(1)
    with pytest.raises(LabelStudioApiError, match="try 1\\)"):
        once.task_count(1)
    with pytest.raises(LabelStudioApiError, match=f"try {client_module.MAX_TRIES}\\)"):
        client.task_count(1)
    with pytest.raises(LabelStudioApiError, match="try 3\\)"):
        LabelStudioClient(dead_url, "t0ken", timeout=2, max_tries=3).task_count(1)
    with pytest.raises(ValueError, match="tries must be >= 1"):
        client.with_tries(0)

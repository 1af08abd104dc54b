"""Exclusive creates: of writers racing for one name exactly one wins, on a folder and on object storage."""

from __future__ import annotations

import threading
import uuid

import pytest

from corpus.store import DataRoot


def _race(root: DataRoot, relpath: str, writers: int) -> list[bytes]:
    start = threading.Barrier(writers)
    won: list[bytes] = []

    def write() -> None:
        data = uuid.uuid4().hex.encode()
        start.wait()
        try:
            root.create_exclusive(relpath, data)
            won.append(data)
        except FileExistsError:
            pass

    threads = [threading.Thread(target=write) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return won


@pytest.mark.parametrize("kind", ["local", "memory"])
def test_exactly_one_of_racing_writers_wins_and_its_bytes_stay(tmp_path, kind) -> None:
    root = DataRoot(str(tmp_path)) if kind == "local" else DataRoot(f"memory://exclusive-{uuid.uuid4().hex}")
    for attempt in range(5):
        won = _race(root, f"state/locks/lock-{attempt}", 8)
        assert len(won) == 1
        assert root.read_bytes(f"state/locks/lock-{attempt}") == won[0]
    with pytest.raises(FileExistsError):
        root.create_exclusive("state/locks/lock-0", b"late")
    assert root.remove("state/locks/lock-0") and not root.remove("state/locks/lock-0")
    root.create_exclusive("state/locks/lock-0", b"again")  # free once removed
    assert root.read_bytes("state/locks/lock-0") == b"again"
    if kind == "local":
        assert not [p for p in (tmp_path / "state" / "locks").iterdir() if p.name.startswith(".tmp-")]


def test_exclusive_create_against_a_real_s3_server(moto_s3) -> None:
    root, _ = moto_s3.open_root("exclusive")
    won = _race(root, "state/rounds/demo/open.json", 6)
    assert len(won) == 1 and root.read_bytes("state/rounds/demo/open.json") == won[0]

"""Rounds under the data root: one JSON file per round, and the claim that lets a dataset have one open round."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime

from corpus.store import DataRoot
from labeling.round_state import LabelRound

ROUNDS_DIR = "state/rounds"
_ROUND_FILE = re.compile(r"round-(\d{4,})\.json$")


class RoundOpenError(RuntimeError):
    """The dataset already has an open round: a second push is refused, never added beside it."""


def _dataset_dir(dataset: str) -> str:
    if not dataset or "/" in dataset or dataset.startswith("."):
        raise ValueError(f"bad dataset name {dataset!r}: use a plain folder name")
    return f"{ROUNDS_DIR}/{dataset}"


def round_path(dataset: str, number: int) -> str:
    return f"{_dataset_dir(dataset)}/round-{number:04d}.json"


def claim_path(dataset: str) -> str:
    """The claim file: it exists exactly while the dataset has an open round, and names that round."""
    return f"{_dataset_dir(dataset)}/OPEN"


def list_round_numbers(root: DataRoot, dataset: str) -> list[int]:
    """The numbers of the dataset's rounds that have a file, ascending."""
    found = (_ROUND_FILE.search(p) for p in root.list(_dataset_dir(dataset), ".json"))
    return sorted(int(m.group(1)) for m in found if m)


def claim_round(root: DataRoot, dataset: str) -> int:
    """Claim the dataset's next round number for a push; RoundOpenError (naming the open round) when a round
    is open. Of two pushes at the same moment exactly one claims (an exclusive create); the other is refused."""
    number = max(list_round_numbers(root, dataset), default=0) + 1
    claim = json.dumps({"round": number, "token": uuid.uuid4().hex, "at": datetime.now(UTC).isoformat()})
    try:
        root.create_exclusive(claim_path(dataset), claim.encode())
    except FileExistsError:
        raise RoundOpenError(_refusal(root, dataset)) from None
    return number


def _refusal(root: DataRoot, dataset: str) -> str:
    held = open_round_number(root, dataset)
    current = load_round(root, dataset, held) if held and root.exists(round_path(dataset, held)) else None
    if current is None:
        return f"dataset {dataset!r} has a round being opened right now (round {held}); nothing pushed"
    share = (current.progress or {}).get("share_done")
    done = f", {share:.0%} done" if share is not None else ""
    return (
        f"dataset {dataset!r} has an open round ({current.id}, {current.status}{done}, deadline {current.deadline}); "
        "nothing pushed: wait for it to close, or close it with `flywheel label close`"
    )


def open_round_number(root: DataRoot, dataset: str) -> int | None:
    """The number of the dataset's open round, or None when none is open."""
    if not root.exists(claim_path(dataset)):
        return None
    return int(json.loads(root.read_bytes(claim_path(dataset)))["round"])


def release_claim(root: DataRoot, dataset: str, number: int) -> None:
    """End the open-round claim of round `number` (a claim of another round is left alone)."""
    if open_round_number(root, dataset) == number:
        root.remove(claim_path(dataset))


def save_round(root: DataRoot, round_: LabelRound) -> None:
    root.write_json(round_path(round_.dataset, round_.number), round_.to_dict())


def load_round(root: DataRoot, dataset: str, number: int) -> LabelRound:
    """Round `number` of `dataset`; FileNotFoundError naming the rounds that exist."""
    path = round_path(dataset, number)
    if not root.exists(path):
        known = ", ".join(str(n) for n in list_round_numbers(root, dataset)) or "none"
        raise FileNotFoundError(f"dataset {dataset!r} has no round {number} (rounds: {known})")
    return LabelRound.from_dict(root.read_json(path))


def load_open_round(root: DataRoot, dataset: str) -> LabelRound | None:
    """The dataset's open round, or None; a claim whose round file was never written (a push that died in
    its first step) is no open round."""
    number = open_round_number(root, dataset)
    if number is None or not root.exists(round_path(dataset, number)):
        return None
    return load_round(root, dataset, number)


def list_datasets(root: DataRoot) -> list[str]:
    """Datasets that have had rounds."""
    return root.list_dirs(ROUNDS_DIR)

"""Pretrained weights: reading a state dict from a path or fsspec URL (sha256-pinned, weights-only) and fitting it
to a model (prefixes stripped, a head of another size replaced, every other mismatch reported)."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import Any

import fsspec
import torch
from torch import nn

from corpus.settings import get_settings
from corpus.store import DataRoot, s3_storage_options

# Wrappers that prefix every key: DDP / DataParallel ("module."), torch.compile ("_orig_mod."), and
# checkpoints that nest the network under a `model` attribute (Lightning, many training scripts).
PREFIXES = ("module.", "_orig_mod.", "model.")
# Keys under which training checkpoints nest the state dict (timm's train.py writes "state_dict").
NESTED_KEYS = ("state_dict", "model", "model_state_dict")
# torchvision names its files <arch>-<first 8 hex of the sha256>.pth, so 8 is the shortest pin accepted.
MIN_SHA256_PREFIX = 8


class WeightsError(ValueError):
    """Weights that cannot be read, do not match their pin, or do not fit the model."""


@dataclass
class LoadedWeights:
    """A state dict read from `source`, with the sha256 of the file it came from."""

    state: dict[str, torch.Tensor]
    source: str
    sha256: str
    fmt: str


@dataclass
class FitReport:
    """How loaded weights fitted a model: what was loaded, and the head left at its fresh initialisation."""

    loaded: int
    head: str  # "loaded", "replaced" (another number of classes) or "absent" (headless weights)
    skipped: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"loaded_tensors": self.loaded, "head": self.head, "skipped": self.skipped}


def read_source(source: str, root: DataRoot | None = None) -> bytes:
    """The bytes at `source`: a path relative to the data root `root` (when given), an absolute path, or any
    fsspec URL (s3:// with the data root's endpoint and credentials from settings, https://, ...)."""
    if "://" not in source and root is not None and not source.startswith("/"):
        return root.read_bytes(source)
    protocol = source.split("://", 1)[0] if "://" in source else "file"
    options = s3_storage_options(get_settings()) if protocol in ("s3", "s3a") else {}
    try:
        with fsspec.open(source, "rb", **options) as f:
            return f.read()
    except FileNotFoundError as e:
        raise WeightsError(f"weights {source!r} not found") from e


def _check_pin(source: str, digest: str, sha256: str | None) -> None:
    if sha256 is None:
        return
    pin = sha256.strip().lower()
    if len(pin) < MIN_SHA256_PREFIX or not digest.startswith(pin):
        raise WeightsError(
            f"weights {source!r}: sha256 is {digest}, expected {pin} "
            f"(a full digest or a prefix of at least {MIN_SHA256_PREFIX} hex digits); not loading them"
        )


def _decode(data: bytes, source: str) -> tuple[dict[str, Any], str]:
    """A state dict from safetensors or torch.save bytes (zip or legacy pickle), never running pickled code."""
    # safetensors: an 8-byte little-endian header length, then a JSON header.
    if len(data) > 9 and data[8:9] == b"{":
        from safetensors.torch import load as load_safetensors

        return load_safetensors(data), "safetensors"
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError or others for a non-weights file
        raise WeightsError(f"weights {source!r} are neither safetensors nor a weights-only torch file: {e}") from e
    if not isinstance(obj, dict):
        raise WeightsError(f"weights {source!r} hold a {type(obj).__name__}, not a state dict")
    for key in NESTED_KEYS:
        if isinstance(obj.get(key), dict) and not isinstance(obj.get(key), torch.Tensor):
            obj = obj[key]
            break
    return obj, "torch"


def strip_prefixes(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """`state` with wrapper prefixes (PREFIXES) removed while every key carries the same one."""
    changed = True
    while changed and state:
        changed = False
        for prefix in PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                changed = True
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def load_weights(source: str, sha256: str | None = None, *, root: DataRoot | None = None) -> LoadedWeights:
    """Read a state dict from `source` (see read_source), checking its sha256 against `sha256` when given.

    safetensors files and torch state dicts (torch.load with weights_only=True, also nested under
    "state_dict"/"model") are accepted; "module.", "_orig_mod." and "model." prefixes are stripped."""
    data = read_source(source, root)
    digest = hashlib.sha256(data).hexdigest()
    _check_pin(source, digest, sha256)
    state, fmt = _decode(data, source)
    return LoadedWeights(state=strip_prefixes(state), source=source, sha256=digest, fmt=fmt)


def _listing(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown} (+{len(keys) - limit} more)" if len(keys) > limit else shown


def fit_weights(model: nn.Module, weights: LoadedWeights) -> FitReport:
    """Load `weights` into `model`: every backbone tensor must be present with its shape; the head
    (model.head_name) is loaded when its shape matches and otherwise keeps its fresh initialisation.
    WeightsError names the missing, unexpected and misshapen keys."""
    head = getattr(model, "head_name", "fc") + "."
    own = model.state_dict()
    state = weights.state
    missing = [k for k in own if k not in state and not k.startswith(head)]
    unexpected = [k for k in state if k not in own]
    misshapen = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and not k.startswith(head) and state[k].shape != v.shape
    ]
    if missing or unexpected or misshapen:
        parts = [
            f"{name} {len(keys)}: {_listing(keys)}"
            for name, keys in (("missing", missing), ("unexpected", unexpected), ("misshapen", misshapen))
            if keys
        ]
        raise WeightsError(
            f"weights {weights.source!r} do not fit {type(model).__name__} "
            f"{getattr(model, 'arch', '')}: " + "; ".join(parts)
        )
    head_keys = [k for k in own if k.startswith(head)]
    fits = all(k in state and state[k].shape == own[k].shape for k in head_keys)
    present = any(k in state for k in head_keys)
    take = {k: v for k, v in state.items() if fits or not k.startswith(head)}
    model.load_state_dict({**own, **take})
    skipped = [] if fits else [k for k in head_keys if k in state]
    return FitReport(
        loaded=len(take), head="loaded" if fits else ("replaced" if present else "absent"), skipped=skipped
    )

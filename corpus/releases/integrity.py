"""Manifest integrity: the digest over a release manifest's canonical JSON and its optional HMAC signature."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from pydantic import SecretStr

from corpus.settings import get_settings

DIGEST_FIELD = "manifest_digest"
SIGNATURE_FIELD = "signature"
_DIGEST_PREFIX = "sha256:"
_SIGNATURE_PREFIX = "hmac-sha256:"
# Domain separation: a key shared with another HMAC use never signs a release by accident.
_SIGNING_CONTEXT = b"flywheel release manifest\n"


class ManifestError(ValueError):
    """A manifest's digest or signature is missing or does not match (the message says which)."""


def canonical_manifest(manifest: dict[str, Any]) -> bytes:
    """The canonical JSON of a manifest without its digest and signature: sorted keys, no whitespace.

    It covers every other key, including "files" (the SHA-256 of each split, the card and SHA256SUMS).
    """
    body = {k: v for k, v in manifest.items() if k not in (DIGEST_FIELD, SIGNATURE_FIELD)}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def manifest_digest(manifest: dict[str, Any]) -> str:
    """ "sha256:<hex>" over canonical_manifest(manifest)."""
    return _DIGEST_PREFIX + hashlib.sha256(canonical_manifest(manifest)).hexdigest()


def sign_digest(digest: str, key: str) -> str:
    """ "hmac-sha256:<hex>" of a manifest digest under `key`."""
    mac = hmac.new(key.encode(), _SIGNING_CONTEXT + digest.encode(), hashlib.sha256)
    return _SIGNATURE_PREFIX + mac.hexdigest()


def resolve_signing_key(explicit: str | SecretStr | None = None) -> str | None:
    """The release signing key: `explicit` when given, else settings' FLYWHEEL_RELEASE_SIGNING_KEY (or None)."""
    key = explicit if explicit is not None else get_settings().release_signing_key
    if isinstance(key, SecretStr):
        key = key.get_secret_value()
    return key or None


def seal_manifest(manifest: dict[str, Any], key: str | None) -> dict[str, Any]:
    """The manifest as it will read back from JSON, with its digest and, with a key, its signature."""
    # Round-trip first, so the digest is over exactly what a reader parses (tuples -> lists, default=str).
    body = {k: v for k, v in manifest.items() if k not in (DIGEST_FIELD, SIGNATURE_FIELD)}
    sealed = json.loads(json.dumps(body, default=str))
    sealed[DIGEST_FIELD] = manifest_digest(sealed)
    if key:
        sealed[SIGNATURE_FIELD] = sign_digest(sealed[DIGEST_FIELD], key)
    return sealed


def verify_manifest(manifest: dict[str, Any], key: str | None) -> None:
    """Raise ManifestError unless the manifest's digest matches its content and, with a key, its signature
    is the key's: a reader with the key refuses unsigned manifests."""
    recorded = manifest.get(DIGEST_FIELD)
    if not isinstance(recorded, str) or not recorded.startswith(_DIGEST_PREFIX):
        raise ManifestError(f"has no {DIGEST_FIELD}, so its content cannot be verified")
    if not hmac.compare_digest(recorded, manifest_digest(manifest)):
        raise ManifestError(f"was edited: its content no longer matches its {DIGEST_FIELD}")
    if not key:
        return
    signature = manifest.get(SIGNATURE_FIELD)
    if not isinstance(signature, str):
        raise ManifestError("is not signed, and a signing key is set (FLYWHEEL_RELEASE_SIGNING_KEY)")
    if not hmac.compare_digest(signature, sign_digest(recorded, key)):
        raise ManifestError("has a signature that the signing key did not make (edited, or signed with another key)")

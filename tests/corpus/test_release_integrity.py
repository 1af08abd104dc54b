"""The whole release manifest is verified: its digest (and, with a signing key, its HMAC signature)."""

from __future__ import annotations

import json
import os

import pytest
from test_releases import make_records

from corpus.releases.build import build_release
from corpus.releases.config import ReleaseConfig
from corpus.releases.integrity import DIGEST_FIELD, SIGNATURE_FIELD, manifest_digest, resolve_signing_key, sign_digest
from corpus.releases.versions import MANIFEST_FORMAT, ReleaseIntegrityError, load_release
from corpus.settings import Settings
from corpus.store import DataRoot

KEY = "release-signing-key-for-tests-7c1e"


@pytest.fixture()
def released(tmp_path):
    """(root, the path of release animals/v0001's manifest.json), built unsigned."""
    root = DataRoot(str(tmp_path))
    build_release(root, "animals", make_records(30, seed=61), ReleaseConfig(), signing_key="")
    path = tmp_path / "releases" / "animals" / "v0001" / "manifest.json"
    os.chmod(path, 0o644)
    return root, path


def _edited(value):
    """A different value of the same JSON kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return [*value, "x"]
    if isinstance(value, dict):
        return {**value, "injected": 1}
    return "x"  # None


def test_the_manifest_carries_a_digest_over_its_canonical_form(released):
    root, path = released
    manifest = json.loads(path.read_text())
    assert manifest[DIGEST_FIELD] == manifest_digest(manifest) and manifest[DIGEST_FIELD].startswith("sha256:")
    assert SIGNATURE_FIELD not in manifest and manifest["manifest_format"] == MANIFEST_FORMAT
    # Key order and whitespace are not content: the same manifest re-serialised still verifies.
    path.write_text(json.dumps(dict(reversed(list(manifest.items())))))
    assert load_release(root, "animals", signing_key="").manifest == manifest


def test_every_edited_or_removed_manifest_key_is_refused(released):
    root, path = released
    original = json.loads(path.read_text())
    keys = sorted(k for k in original if k != DIGEST_FIELD)
    assert {"augmentation", "class_counts", "parent", "created_at", "release_id", "files"} <= set(keys)
    for key in keys:
        for tampered in ({**original, key: _edited(original[key])}, {k: v for k, v in original.items() if k != key}):
            path.write_text(json.dumps(tampered))
            # A bumped format is refused as newer than this code before the digest is even read.
            newer = f"has format {MANIFEST_FORMAT + 1}, newer than this code's {MANIFEST_FORMAT}"
            expected = rf"v0001/manifest\.json (was edited|{newer})"
            with pytest.raises(ReleaseIntegrityError, match=expected) as caught:
                load_release(root, "animals", signing_key="")
            assert "\n" not in str(caught.value), key
    # A nested edit: the injected augmentation that `flywheel train` would otherwise train with.
    recipe = json.loads(json.dumps(original["augmentation"]))
    recipe["transforms"][0]["scale"] = [0.01, 0.02]
    path.write_text(json.dumps({**original, "augmentation": recipe}))
    with pytest.raises(ReleaseIntegrityError, match="was edited"):
        load_release(root, "animals", signing_key="")
    path.write_text(json.dumps(original))
    assert load_release(root, "animals", signing_key="").manifest == original


def test_a_manifest_without_a_digest_or_that_is_not_json_is_refused(released):
    root, path = released
    original = json.loads(path.read_text())
    without = {k: v for k, v in original.items() if k != DIGEST_FIELD}
    for manifest in (without, {**without, DIGEST_FIELD: None}, {**without, DIGEST_FIELD: "md5:abc"}):
        path.write_text(json.dumps(manifest))
        with pytest.raises(ReleaseIntegrityError, match=r"manifest\.json has no manifest_digest"):
            load_release(root, "animals", signing_key="")
    for text, reason in (
        ("{not json", "is not valid JSON"),
        ("", "is not valid JSON"),
        (b"\xff\xfe{}", "is not valid JSON"),
        ("[1, 2]", "is not a JSON object"),
    ):
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        with pytest.raises(ReleaseIntegrityError, match=rf"v0001/manifest\.json {reason}") as caught:
            load_release(root, "animals", signing_key="")
        assert "\n" not in str(caught.value)


def test_signed_releases_refuse_unsigned_and_wrongly_signed_manifests(tmp_path):
    root = DataRoot(str(tmp_path))
    m1 = build_release(root, "animals", make_records(30, seed=62), ReleaseConfig(), signing_key=KEY)
    assert m1[SIGNATURE_FIELD] == sign_digest(m1[DIGEST_FIELD], KEY)
    assert load_release(root, "animals", signing_key=KEY).manifest == m1
    with pytest.raises(ReleaseIntegrityError, match="signature that the signing key did not make"):
        load_release(root, "animals", signing_key="another-key")
    path = tmp_path / "releases" / "animals" / "v0001" / "manifest.json"
    os.chmod(path, 0o644)
    # Someone with write access but not the key edits the recipe and recomputes the digest: the digest
    # matches again, the signature does not.
    forged = {**m1, "augmentation": {**m1["augmentation"], "name": "injected"}}
    forged[DIGEST_FIELD] = manifest_digest(forged)
    path.write_text(json.dumps(forged))
    with pytest.raises(ReleaseIntegrityError, match=r"manifest\.json has a signature that the signing key did not"):
        load_release(root, "animals", signing_key=KEY)
    unsigned = {k: v for k, v in forged.items() if k != SIGNATURE_FIELD}
    path.write_text(json.dumps(unsigned))
    with pytest.raises(ReleaseIntegrityError, match=r"manifest\.json is not signed, and a signing key is set"):
        load_release(root, "animals", signing_key=KEY)
    # A signing key also guards the parent that the next build reads.
    with pytest.raises(ReleaseIntegrityError, match="is not signed"):
        build_release(root, "animals", make_records(40, seed=62), ReleaseConfig(), signing_key=KEY)


def test_the_signing_key_comes_from_settings(monkeypatch):
    import corpus.releases.integrity as integrity

    monkeypatch.setenv("FLYWHEEL_RELEASE_SIGNING_KEY", KEY)
    settings = Settings(_env_file=None)
    assert settings.release_signing_key.get_secret_value() == KEY and KEY not in repr(settings)
    monkeypatch.setattr(integrity, "get_settings", lambda: settings)
    assert resolve_signing_key() == KEY and resolve_signing_key("other") == "other"
    assert resolve_signing_key("") is None  # an explicit empty key: unsigned
    monkeypatch.setattr(integrity, "get_settings", lambda: Settings(_env_file=None, release_signing_key=None))
    assert resolve_signing_key() is None

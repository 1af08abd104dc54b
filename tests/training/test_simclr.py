"""SimCLR pretraining on the pool: the NT-Xent loss, the two views, and the encoder published with its embeddings."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import torch

from corpus.store import DataRoot
from training.backbones import create_model
from training.encoders import (
    compute_pool_digest,
    latest_encoder,
    load_encoder,
    newest_embeddings,
    pretrain_pool_encoder,
    read_encoder_metadata,
)
from training.simclr import SimCLRConfig, build_views, embed_images, nt_xent_loss, pretrain_simclr, trim_borders
from training.weights import fit_weights, load_weights

TINY = {"image_size": 32, "batch_size": 16, "width": 8, "device": "cpu"}


def test_nt_xent_is_low_for_matching_pairs_and_chance_for_random_ones() -> None:
    z = torch.nn.functional.one_hot(torch.arange(8), 16).float()
    assert nt_xent_loss(z, z, temperature=0.1).item() < 0.01  # each view has only its twin nearby
    torch.manual_seed(0)
    noise = nt_xent_loss(torch.randn(256, 64), torch.randn(256, 64)).item()
    assert noise == pytest.approx(math.log(2 * 256 - 1), rel=0.05)
    with pytest.raises(ValueError, match=r"N >= 2"):
        nt_xent_loss(torch.zeros(1, 4), torch.zeros(1, 4))


def test_two_views_of_one_image_differ_and_have_the_asked_size() -> None:
    image = np.random.default_rng(0).integers(0, 255, size=(48, 40, 3), dtype=np.uint8)
    views = build_views(32, seed=0)
    a, b = views(image=image)["image"], views(image=image)["image"]
    assert a.shape == b.shape == (32, 32, 3) and a.dtype == np.float32
    assert not np.allclose(a, b)


def test_pretraining_lowers_the_contrastive_loss(make_shape_records) -> None:
    records = make_shape_records(4)
    ids, images = records.column("record_id").to_pylist(), records.column("image").to_pylist()
    _, _, report = pretrain_simclr(images, ids, SimCLRConfig(epochs=6, lr=3e-3, **TINY))
    losses = [h["loss"] for h in report["history"]]
    assert report["device"] == "cpu" and report["precision"] == "fp32"
    assert min(losses[-2:]) < losses[0] < report["chance_loss"] + 0.5


def test_pretrain_pool_encoder_publishes_a_versioned_encoder_with_pool_embeddings(tmp_path, make_shape_records) -> None:
    root = DataRoot(str(tmp_path))
    records = make_shape_records(3)
    pool = pa.concat_tables([records, records.slice(0, 2)])  # a record listed twice is embedded once
    ids = records.column("record_id").to_pylist()
    assert latest_encoder(root) is None and newest_embeddings(root) == (None, None)
    meta = pretrain_pool_encoder(root, pool, pool_path="curated/x/kept", cfg=SimCLRConfig(epochs=1, **TINY))
    assert meta["encoder_version"] == "simclr-0001" and meta["method"] == "simclr" and meta["epochs"] == 1
    assert meta["pool_digest"] == compute_pool_digest(ids) and meta["n_images"] == len(ids)
    assert read_encoder_metadata(root, "simclr-0001")["pool"] == "curated/x/kept"
    version, table = newest_embeddings(root)
    assert version == "simclr-0001" and table.schema.metadata[b"flywheel.encoder"] == b"simclr-0001"
    assert sorted(table.column("record_id").to_pylist()) == sorted(ids)
    stored = np.asarray(table.column("embedding").to_pylist())
    assert np.allclose(np.linalg.norm(stored, axis=1), 1.0, atol=1e-4)
    # The saved backbone gives back the stored embeddings.
    backbone, _ = load_encoder(root, "simclr-0001")
    order = table.column("record_id").to_pylist()
    images = dict(zip(ids, records.column("image").to_pylist(), strict=True))
    again = embed_images(backbone, [images[r] for r in order], order, image_size=32, device="cpu")
    assert np.allclose(again, stored, atol=1e-4)
    second = pretrain_pool_encoder(root, records, cfg=SimCLRConfig(epochs=1, **TINY))
    assert second["encoder_version"] == "simclr-0002" == latest_encoder(root)
    with pytest.raises(FileNotFoundError, match="simclr-0001, simclr-0002"):
        read_encoder_metadata(root, "simclr-0009")


def test_a_pool_of_one_image_cannot_be_contrasted(make_shape_records) -> None:
    records = make_shape_records(1).slice(0, 1)
    with pytest.raises(ValueError, match="at least 2 images"):
        pretrain_simclr(records.column("image").to_pylist(), ["a"], SimCLRConfig(epochs=1, **TINY))


def test_the_encoder_weights_start_a_classifier(tmp_path, make_shape_records) -> None:
    root = DataRoot(str(tmp_path))
    records = make_shape_records(2)
    meta = pretrain_pool_encoder(root, records, cfg=SimCLRConfig(epochs=1, **TINY))
    weights = load_weights(f"encoders/{meta['encoder_version']}/encoder.pt", root=root)
    model = create_model("small-cnn", 4, width=8)
    report = fit_weights(model, weights)
    assert report.head == "replaced"  # the 1-class placeholder head gives way to the classifier's own
    backbone, _ = load_encoder(root, meta["encoder_version"])
    assert torch.equal(model.features[0][0].weight, backbone.features[0][0].weight)


def test_trim_borders_removes_letterbox_bars_and_nothing_else() -> None:
    rng = np.random.default_rng(1)
    photo = rng.integers(40, 255, size=(30, 40, 3), dtype=np.uint8)
    boxed = np.zeros((50, 40, 3), np.uint8)
    boxed[10:40] = photo
    boxed[9, :] = 6  # JPEG-like ringing next to the bar stays bar
    assert np.array_equal(trim_borders(boxed), photo)
    assert np.array_equal(trim_borders(photo), photo)  # no bars: unchanged
    tiny = np.zeros((40, 40, 3), np.uint8)
    tiny[18:22, 18:22] = 200  # a dot on black is not a letterboxed photo
    assert trim_borders(tiny).shape == tiny.shape

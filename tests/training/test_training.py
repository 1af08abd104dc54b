"""Tests for training: recipes, datasets, the train loop, the registry and pool prediction."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch

import training.devices as devices_module
import training.loop as loop_module
import training.train as train_module
from corpus.releases.build import build_release
from corpus.releases.config import ReleaseConfig
from corpus.releases.recipes import AugmentationRecipe
from corpus.schema import PREDICTION_SCHEMA, conform
from corpus.store import DataRoot
from training.augment import build_transforms, get_recipe, materialize_augmented
from training.config import TrainConfig
from training.data import EpochSampler, ImageDecodeError, ReleaseImageDataset
from training.devices import loader_workers, pick_device, pick_memory_format, pick_precision
from training.model import SmallCNN
from training.predict import predict_pool
from training.registry import latest_model, list_models, load_model
from training.report import render_report
from training.train import train_model

SHAPES = ("circle", "square", "triangle", "cross")
# num_workers=0: tests decode in the main process (worker start-up would dominate these tiny runs).
FAST = TrainConfig(image_size=32, epochs=12, batch_size=16, width=16, patience=6, num_workers=0)


@pytest.fixture(scope="module")
def trained(shapes_root: DataRoot) -> dict:
    return train_model(shapes_root, "shapes", "latest", FAST)


def test_recipes_shape_and_unknown_name():
    image = np.random.default_rng(0).integers(0, 256, size=(50, 70, 3), dtype=np.uint8)
    for name in ("train-basic", "eval"):
        out = get_recipe(name, 32, seed=1)(image=image)["image"]
        assert out.shape == (32, 32, 3) and out.dtype == np.float32
    a = get_recipe("train-basic", 32, seed=3)(image=image)["image"]
    b = get_recipe("train-basic", 32, seed=3)(image=image)["image"]
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match=r"recipes: \['eval', 'train-basic', 'train-light'\]"):
        get_recipe("fancy", 32)
    # Size is filled in; a left-out p keeps the transform's own default (RandomResizedCrop: always).
    crop = build_transforms([{"__class_fullname__": "RandomResizedCrop", "scale": [0.9, 1.0]}], 24)
    assert crop(image=image)["image"].shape == (24, 24, 3) and crop.transforms[0].p == 1.0
    with pytest.raises(ValueError, match=r"'os\.system' is not an albumentations transform"):
        build_transforms([{"__class_fullname__": "os.system"}], 24)
    with pytest.raises(ValueError, match="cannot build HorizontalFlip"):
        build_transforms([{"__class_fullname__": "HorizontalFlip", "bogus": 1}], 24)


def test_model_embed_and_logits_shapes():
    model = SmallCNN(5, width=8).eval()
    x = torch.zeros(2, 3, 32, 32)
    assert model.embed(x).shape == (2, 32)
    assert model(x).shape == (2, 5)


def test_precision_and_workers_choices():
    cpu = torch.device("cpu")
    assert pick_precision(cpu, "auto") is None and pick_precision(cpu, "bf16") == torch.bfloat16
    with pytest.raises(ValueError, match="fp16 autocast needs CUDA"):
        pick_precision(cpu, "fp16")
    assert loader_workers(0) == 0 and loader_workers(3) == 3
    assert loader_workers(None, cpu) == 0  # CPU training: the model's threads already use every core
    assert 0 <= loader_workers(None, torch.device("cuda")) <= devices_module.MAX_AUTO_WORKERS


def test_channels_last_by_default_unless_asked_off():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert pick_memory_format(cpu, "auto") == torch.channels_last  # measured faster on CPU too (bench/TRAIN.md)
    assert pick_memory_format(cuda, "auto") == torch.channels_last
    assert pick_memory_format(cpu, "off") == torch.contiguous_format
    assert (
        pick_memory_format(cpu, "on") == torch.channels_last
        and pick_memory_format(cuda, "off") == torch.contiguous_format
    )
    with pytest.raises(ValueError, match="unknown channels_last 'yes'"):
        pick_memory_format(cpu, "yes")
    # The default is auto; the booleans of older configs still read as on / off.
    assert TrainConfig().channels_last == "auto"
    assert (
        TrainConfig(channels_last=True).channels_last == "on"
        and TrainConfig(channels_last=False).channels_last == "off"
    )
    # The loop lays its model out by the rule: a CPU run is NHWC unless asked for NCHW ("off").
    for pref, nhwc in (("auto", True), ("on", True), ("off", False)):
        run = loop_module.Run(FAST.model_copy(update={"channels_last": pref}), 4, cpu)
        conv = next(p for p in run.model.parameters() if p.ndim == 4)
        assert conv.is_contiguous(memory_format=torch.channels_last) == nhwc
        assert conv.is_contiguous() != nhwc


def test_epoch_sampler_is_a_seeded_permutation_per_epoch():
    sampler = EpochSampler(10, seed=1)
    first = [i for _, i in sampler]
    assert sorted(first) == list(range(10)) and {e for e, _ in sampler} == {0}
    sampler.set_epoch(1)
    second = [i for _, i in sampler]
    assert second != first and [i for _, i in sampler] == second


def test_pick_device_is_cpu_here():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device().type == expected
    assert pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            pick_device("cuda")


def test_training_learns_synthetic_shapes(trained: dict, shapes_root: DataRoot):
    chance = 1 / len(SHAPES)
    assert trained["labels"] == sorted(SHAPES)
    assert trained["test_accuracy"] > 0.6 > chance, trained
    assert trained["n_train"] + trained["n_val"] + trained["n_test"] == 120
    assert trained["n_test"] > 0 and trained["n_val"] > 0
    cm = np.array(trained["confusion_matrix"])
    assert cm.shape == (4, 4) and cm.sum() == trained["n_test"]
    assert set(trained["per_class"]) == set(SHAPES)
    assert 1 <= trained["epochs_run"] <= FAST.epochs and trained["device"] == "cpu"
    assert trained["model_version"] == "shapes-v0001-m001"
    folder = shapes_root.path("models", trained["model_version"])
    state = torch.load(f"{folder}/model.pt", weights_only=True)
    model = SmallCNN(4, width=16)
    model.load_state_dict(state)
    on_disk = json.loads(shapes_root.read_bytes(f"models/{trained['model_version']}/metrics.json"))
    assert on_disk["test_accuracy"] == trained["test_accuracy"]
    # What it trained on and with: the release's recipe, serialised by albumentations itself.
    aug = trained["augmentation"]
    assert trained["recipe"] == "train-basic" and aug["source"] == "release"
    assert aug["albumentations"]["transform"]["transforms"][0]["__class_fullname__"] == "RandomResizedCrop"
    assert trained["release_id"].startswith("sha256:")
    # Test metrics beyond accuracy.
    assert 0.0 <= trained["test_ece"] <= 1.0
    assert sum(b["count"] for b in trained["calibration"]["bins"]) == trained["n_test"]
    pcm = trained["per_class_metrics"]
    assert sum(m["support"] for m in pcm.values()) == trained["n_test"]
    assert all(trained["per_class"][lab] == pcm[lab]["recall"] for lab in SHAPES)
    # channels_last "auto" is off on CPU (bench/TRAIN.md), and the metrics say what was used.
    assert trained["precision"] == "fp32" and trained["channels_last"] is True
    assert trained["effective_batch_size"] == FAST.batch_size and trained["train_images_per_s"] > 0
    report = shapes_root.read_bytes(f"models/{trained['model_version']}/report.md").decode()
    assert report == render_report(trained)
    for heading in ("## Per class (test)", "## Confusion matrix", "## Calibration"):
        assert heading in report
    # The run's resume checkpoint is gone once the model is published.
    assert not shapes_root.exists("models/.runs")


def test_registry_and_prediction(trained: dict, shapes_root: DataRoot, make_shape_records):
    mv = trained["model_version"]
    assert mv in list_models(shapes_root)
    assert latest_model(shapes_root, "shapes") == mv
    assert latest_model(shapes_root, "no-such-dataset") is None
    model, meta = load_model(shapes_root, mv)
    assert meta["labels"] == sorted(SHAPES) and not model.training
    with pytest.raises(FileNotFoundError, match=f"models: {mv}"):
        load_model(shapes_root, "nope")

    pool = make_shape_records(5, seed=99)
    text_row = conform(pa.table({"record_id": ["t1"], "kind": ["text"], "text": ["hello"]}))
    pool = pa.concat_tables([pool, text_row])
    preds = predict_pool(shapes_root, mv, pool, batch_size=8)
    assert preds.schema.equals(PREDICTION_SCHEMA)
    assert preds.num_rows == 20 and "t1" not in preds.column("record_id").to_pylist()
    probs = np.array(preds.column("probs").to_pylist())
    assert probs.shape == (20, 4)
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert np.allclose(probs.max(1), preds.column("confidence").to_numpy(), atol=1e-6)
    assert {len(e) for e in preds.column("embedding").to_pylist()} == {model.embedding_dim}
    # The fresh pool is drawn like the training data, so most predictions are right.
    truth = dict(zip(pool.column("record_id").to_pylist(), pool.column("label").to_pylist(), strict=True))
    predicted = zip(preds.column("record_id").to_pylist(), preds.column("predicted_label").to_pylist(), strict=True)
    right = sum(truth[r] == p for r, p in predicted)
    assert right / 20 > 0.6
    written = shapes_root.read_table(f"models/{mv}/predictions.parquet", schema=PREDICTION_SCHEMA)
    assert written.equals(preds)


def test_same_seed_same_weights_and_next_version(shapes_root: DataRoot, trained: dict):
    cfg = FAST.model_copy(update={"epochs": 2})
    a = train_model(shapes_root, "shapes", "v0001", cfg)
    b = train_model(shapes_root, "shapes", "v0001", cfg)
    assert a["model_version"] != b["model_version"] != trained["model_version"]
    assert a["model_version"].startswith("shapes-v0001-m")
    wa = torch.load(io.BytesIO(shapes_root.read_bytes(f"models/{a['model_version']}/model.pt")), weights_only=True)
    wb = torch.load(io.BytesIO(shapes_root.read_bytes(f"models/{b['model_version']}/model.pt")), weights_only=True)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_corrupt_image_names_the_record(tmp_path, make_shape_records):
    records = make_shape_records(4, seed=5)
    images = records.column("image").to_pylist()
    images[3] = b"\x89PNG\r\n\x1a\n" + b"garbage" * 10
    bad_id = records.column("record_id")[3].as_py()
    records = records.set_column(records.schema.get_field_index("image"), "image", pa.array(images, pa.binary()))
    ds = ReleaseImageDataset(records, sorted(SHAPES), get_recipe("eval", 32))
    with pytest.raises(ImageDecodeError, match=bad_id):
        ds[3]
    # Same through the train loop, whichever split the bad record landed in (train, val or test).
    root = DataRoot(str(tmp_path))
    # One record per split is not guaranteed with 16 rows; put everything in train to be sure it is read.
    build_release(root, "broken", records, ReleaseConfig(train=1.0, val=0.0, test=0.0))
    with pytest.raises(ImageDecodeError, match=bad_id):
        train_model(root, "broken", cfg=FAST.model_copy(update={"epochs": 1}))
    assert list_models(root) == []
    assert pc.sum(pc.equal(records.column("record_id"), bad_id)).as_py() == 1


def test_empty_val_trains_all_epochs_without_early_stopping(tmp_path, make_shape_records):
    root = DataRoot(str(tmp_path))
    build_release(root, "noval", make_shape_records(6, seed=11), ReleaseConfig(train=0.75, val=0.0, test=0.25))
    seen: list[dict] = []
    metrics = train_model(root, "noval", cfg=FAST.model_copy(update={"epochs": 3, "patience": 1}), on_epoch=seen.append)
    assert [r["epoch"] for r in seen] == [1, 2, 3] and all(r["train_loss"] > 0 for r in seen)  # progress per epoch
    assert metrics["n_val"] == 0 and metrics["val_accuracy"] is None
    assert metrics["epochs_run"] == 3 and metrics["best_epoch"] == 3
    assert metrics["n_test"] > 0 and metrics["test_accuracy"] is not None


def test_corrupt_pool_image_names_the_record(trained: dict, shapes_root: DataRoot, make_shape_records):
    pool = make_shape_records(2, seed=12)
    images = pool.column("image").to_pylist()
    images[5] = b"not an image at all"
    pool = pool.set_column(pool.schema.get_field_index("image"), "image", pa.array(images, pa.binary()))
    with pytest.raises(ImageDecodeError, match=pool.column("record_id")[5].as_py()):
        predict_pool(shapes_root, trained["model_version"], pool)


def test_resume_after_a_crash_gives_the_same_model(tmp_path, make_shape_records, monkeypatch):
    root = DataRoot(str(tmp_path))
    build_release(root, "shapes", make_shape_records(6, seed=21), ReleaseConfig())
    cfg = FAST.model_copy(update={"epochs": 4, "patience": 10})
    real = loop_module.Run.train_epoch
    calls = {"n": 0}

    def crash_on_third_epoch(self, loader):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("planted crash: node preempted")
        return real(self, loader)

    monkeypatch.setattr(loop_module.Run, "train_epoch", crash_on_third_epoch)
    with pytest.raises(RuntimeError, match="planted crash"):
        train_model(root, "shapes", cfg=cfg)
    monkeypatch.undo()
    assert list_models(root) == [] and len(root.list_dirs("models/.runs")) == 1
    resumed = train_model(root, "shapes", cfg=cfg)
    assert resumed["resumed_from_epoch"] == 2 and resumed["epochs_run"] == 4
    straight = train_model(root, "shapes", cfg=cfg.model_copy(update={"resume": False}))
    assert straight["resumed_from_epoch"] is None
    wa = torch.load(io.BytesIO(root.read_bytes(f"models/{resumed['model_version']}/model.pt")), weights_only=True)
    wb = torch.load(io.BytesIO(root.read_bytes(f"models/{straight['model_version']}/model.pt")), weights_only=True)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in straight["history"]]


def test_gradient_accumulation_steps_the_optimizer_every_n_batches():
    run = loop_module.Run(FAST.model_copy(update={"accumulate": 3}), 4, torch.device("cpu"))
    batches = [(torch.randn(2, 3, 32, 32), torch.randint(0, 4, (2,))) for _ in range(7)]
    stats = run.train_epoch(batches)
    steps = {int(s["step"]) for s in run.optimizer.state.values()}
    assert steps == {3}  # ceil(7 / 3): two full groups and the short last one
    assert stats["images"] == 14


def test_early_stopping_when_val_never_improves(tmp_path, make_shape_records, monkeypatch):
    root = DataRoot(str(tmp_path))
    build_release(root, "shapes", make_shape_records(6, seed=22), ReleaseConfig())
    real = loop_module.Run.predict

    def stuck(self, loader):
        probs, targets, _ = real(self, loader)
        # Planted: a val signal that never moves (constant predictions and loss).
        return np.full_like(probs, 1 / probs.shape[1]), targets, 1.0

    monkeypatch.setattr(loop_module.Run, "predict", stuck)
    metrics = train_model(root, "shapes", cfg=FAST.model_copy(update={"epochs": 10, "patience": 2}))
    assert metrics["early_stopped"] is True
    assert metrics["best_epoch"] == 1 and metrics["epochs_run"] == 3


def test_release_recipe_is_used_and_config_can_override(tmp_path, make_shape_records):
    root = DataRoot(str(tmp_path))
    light = ReleaseConfig(augmentation=AugmentationRecipe(name="train-light"))
    build_release(root, "shapes", make_shape_records(4, seed=23), light)
    cfg = FAST.model_copy(update={"epochs": 1, "precision": "bf16", "accumulate": 2})
    m = train_model(root, "shapes", cfg=cfg)
    assert m["recipe"] == "train-light" and m["augmentation"]["source"] == "release"
    assert m["precision"] == "bfloat16" and m["effective_batch_size"] == 2 * FAST.batch_size
    names = [t["__class_fullname__"] for t in m["augmentation"]["albumentations"]["transform"]["transforms"]]
    assert names == ["Resize", "HorizontalFlip", "Normalize"]
    over = train_model(root, "shapes", cfg=cfg.model_copy(update={"recipe": "train-basic"}))
    assert over["recipe"] == "train-basic" and over["augmentation"]["source"] == "config"
    preds = predict_pool(root, over["model_version"], make_shape_records(1, seed=24))
    assert preds.num_rows == 4


def test_offline_augmented_copies(tmp_path, make_shape_records):
    root = DataRoot(str(tmp_path))
    build_release(root, "shapes", make_shape_records(4, seed=25), ReleaseConfig(train=1.0, val=0.0, test=0.0))
    out = materialize_augmented(root, "shapes", copies=3, image_size=24, seed=7)
    table = root.read_table(out["path"], schema=None)
    assert table.num_rows == 3 * 16 and sorted(set(table.column("copy").to_pylist())) == [0, 1, 2]
    assert set(table.column("width").to_pylist()) == {24}
    again = materialize_augmented(root, "shapes", copies=3, image_size=24, seed=7)
    assert root.read_table(again["path"], schema=None).equals(table)
    # The copies differ from one another (the recipe is random), and each decodes as an image.
    first = table.filter(pc.equal(table.column("record_id"), table.column("record_id")[0]))
    assert len(set(first.column("image").to_pylist())) > 1


def test_fit_state_keeps_the_best_val_and_stops_after_patience():
    run = loop_module.Run(FAST, 4, torch.device("cpu"))
    state = loop_module.FitState(best_state=loop_module.cpu_state(run.model))
    # Planted val signal: epoch 2 beats 1; epoch 3 ties on accuracy with a lower loss (wins); then no gain.
    planted = [(0.5, 1.0), (0.6, 0.9), (0.6, 0.8), (0.6, 0.85), (0.55, 0.7)]
    for epoch, val in enumerate(planted, start=1):
        state.observe(run, epoch, val, patience=2)
        state.history.append({"epoch": epoch})
    assert state.best_epoch == 3 and state.best_val == 0.6 and state.best_score == [0.6, -0.8]
    assert state.stopped is True and state.epochs_run == 5
    no_val = loop_module.FitState(best_state={})
    for epoch in (1, 2, 3):
        no_val.observe(run, epoch, None, patience=1)
    assert no_val.best_epoch == 3 and no_val.stopped is False and no_val.best_val is None


def test_compute_test_metrics_on_planted_predictions():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    targets = np.array([0, 1, 1, 1])
    m = train_module.compute_test_metrics(probs, targets, 0.5, ["a", "b"])
    assert m["test_accuracy"] == 0.75 and m["test_loss"] == 0.5
    assert m["confusion_matrix"] == [[1, 0], [1, 2]]
    assert m["per_class"] == {"a": 1.0, "b": pytest.approx(2 / 3)}
    assert m["test_macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    empty = train_module.compute_test_metrics(np.zeros((0, 2)), np.zeros(0, np.int64), None, ["a", "b"])
    assert empty["test_accuracy"] is None and empty["confusion_matrix"] == [[0, 0], [0, 0]]


def test_publish_takes_the_next_free_version_and_writes_metrics_last(monkeypatch):
    import uuid

    root = DataRoot(f"memory://models-{uuid.uuid4().hex}")
    root.publish_folder("models/d-v0001-m001", {"metrics.json": b"{}"}, "metrics.json")
    taken = iter(["d-v0001-m001", "d-v0001-m002"])
    # Planted race: the first number this trainer picks was published by another one meanwhile.
    monkeypatch.setattr(train_module, "_next_model_version", lambda root, dataset, version: next(taken))
    metrics = {"dataset": "d", "release": "v0001", "labels": ["a"], "history": []}
    monkeypatch.setattr(train_module, "render_report", lambda m: f"report of {m['model_version']}")
    published = train_module._publish(root, "d", "v0001", b"weights", metrics)
    assert published["model_version"] == "d-v0001-m002"
    assert root.read_json("models/d-v0001-m002/metrics.json") == published
    assert root.read_bytes("models/d-v0001-m002/model.pt") == b"weights"
    assert root.read_bytes("models/d-v0001-m002/report.md") == b"report of d-v0001-m002"
    assert root.read_bytes("models/d-v0001-m001/metrics.json") == b"{}"


@pytest.mark.s3
def test_two_trainers_publishing_at_once_on_s3_get_two_versions(moto_s3, monkeypatch):
    import threading

    root, _ = moto_s3.open_root("models")
    real_publish = type(root).publish_folder
    barrier = threading.Barrier(2, timeout=60)

    def publish_together(self, *args, **kwargs):
        # Both trainers picked their number before either published: the first try collides.
        if not getattr(barrier, "passed", False):
            barrier.wait()
            barrier.passed = True
        return real_publish(self, *args, **kwargs)

    monkeypatch.setattr(type(root), "publish_folder", publish_together)
    monkeypatch.setattr(train_module, "render_report", lambda m: m["model_version"])
    published: list[dict] = []

    def publish(i: int) -> None:
        metrics = {"dataset": "d", "release": "v0001", "trainer": i}
        published.append(train_module._publish(root, "d", "v0001", f"weights {i}".encode(), metrics))

    threads = [threading.Thread(target=publish, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    monkeypatch.undo()
    assert sorted(m["model_version"] for m in published) == ["d-v0001-m001", "d-v0001-m002"]
    assert list_models(root) == ["d-v0001-m001", "d-v0001-m002"]
    for m in published:
        assert root.read_json(f"models/{m['model_version']}/metrics.json") == m
        assert root.read_bytes(f"models/{m['model_version']}/model.pt") == f"weights {m['trainer']}".encode()

"""Tests for release exports: each format read by its real consumer (datasets, webdataset, torch, pandas)."""

from __future__ import annotations

import io
import os
import tarfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder never needs the Hub; tests have no network

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from PIL import Image
from test_releases import _set, make_records

from corpus.exports.export import ExportError, export_release, verify_export
from corpus.exports.formats import write_tar_shards
from corpus.releases.build import build_release
from corpus.releases.config import ReleaseConfig
from corpus.releases.snippets import render_load_snippets
from corpus.releases.versions import ReleaseIntegrityError, load_release
from corpus.store import DataRoot


def _release(tmp_path, n: int = 60, seed: int = 3, dataset: str = "animals") -> tuple[DataRoot, dict]:
    root = DataRoot(str(tmp_path / "root"))
    records = make_records(n, seed=seed)
    records = _set(records, "pii_counts", [[("email", 1)] if i % 7 == 0 else None for i in range(n)])
    records = _set(records, "source", ["site-a" if i % 3 else "bucket-b" for i in range(n)])
    cfg = ReleaseConfig(description="Animals from two sources.", licence="CC-BY-4.0")
    return root, build_release(root, dataset, records, cfg)


def _by_id(root: DataRoot, dataset: str = "animals") -> dict[str, dict]:
    release = load_release(root, dataset)
    table = pa.concat_tables([release.train, release.val, release.test])
    return {r["record_id"]: r for r in table.select(["record_id", "image", "label", "split"]).to_pylist()}


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_the_manifest_carries_labels_description_licence_and_sources(tmp_path):
    root, manifest = _release(tmp_path)
    train_labels = sorted(set(load_release(root, "animals").train.column("label").to_pylist()))
    assert manifest["labels"] == train_labels == ["bird", "cat", "dog"]
    assert manifest["description"] == "Animals from two sources." and manifest["licence"] == "CC-BY-4.0"
    assert manifest["sources"] == [{"source": "bucket-b", "rows": 20}, {"source": "site-a", "rows": 40}]
    card = (tmp_path / "root/releases/animals/v0001/card.html").read_text()
    assert "How to load" in card and "CC-BY-4.0" in card and "load_dataset(" in card
    # pii_counts round-trips through the release files' list form back to the record schema's map.
    pii = load_release(root, "animals").train.column("pii_counts")
    assert pa.types.is_map(pii.type) and [("email", 1)] in pii.to_pylist()


def test_the_how_to_load_snippets_run_against_the_release(tmp_path):
    pytest.importorskip("datasets")
    _root, manifest = _release(tmp_path)
    path = str(tmp_path / "root/releases/animals/v0001")
    snippets = render_load_snippets(path, manifest["labels"])
    scope: dict = {}
    exec(snippets["pandas"], scope)
    assert len(scope["train"]) == manifest["rows"]["train"]
    exec(snippets["datasets"], scope)  # the release folder itself: the map column no longer stops `datasets`
    assert {s: scope["ds"][s].num_rows for s in scope["ds"]} == {
        "train": manifest["rows"]["train"],
        "validation": manifest["rows"]["val"],
        "test": manifest["rows"]["test"],
    }
    exec(snippets["torch"], scope)
    image, index = scope["train"][0]
    assert image.size == (12, 12) and 0 <= index < len(manifest["labels"])


def test_hf_export_loads_with_datasets_as_image_and_class_label(tmp_path):
    datasets = pytest.importorskip("datasets")
    root, manifest = _release(tmp_path)
    out = export_release(root, "animals", "v0001", "hf", str(tmp_path / "hf"))
    ds = datasets.load_dataset(str(tmp_path / "hf"), cache_dir=str(tmp_path / "hf-cache"))
    assert set(ds) == {"train", "validation", "test"}
    features = ds["train"].features
    assert isinstance(features["image"], datasets.Image) and isinstance(features["label"], datasets.ClassLabel)
    assert features["label"].names == manifest["labels"] == out["labels"]
    assert ds["validation"].num_rows == manifest["rows"]["val"] == out["splits"]["validation"]
    truth = _by_id(root)
    for split in ds:
        for row in ds[split]:
            want = truth[row["record_id"]]
            assert features["label"].int2str(row["label"]) == want["label"]
            assert np.array_equal(np.asarray(row["image"].convert("RGB")), _pixels(want["image"]))
    assert sum(row["pii_counts"] == [{"entity": "email", "count": 1}] for row in ds["train"]) > 0


def test_webdataset_shards_stream_with_webdataset_and_respect_the_shard_size(tmp_path):
    wds = pytest.importorskip("webdataset")
    root, manifest = _release(tmp_path, n=240)
    shard_bytes = 64 * 1024
    out = export_release(root, "animals", 1, "webdataset", str(tmp_path / "wds"), shard_bytes=shard_bytes)
    shards = sorted((tmp_path / "wds").glob("train-*.tar"))
    assert len(shards) > 1 and all(p.stat().st_size <= shard_bytes for p in shards)
    assert out["options"] == {"shard_bytes": shard_bytes}
    truth = _by_id(root)
    seen = []
    dataset = wds.WebDataset([str(p) for p in shards], shardshuffle=False, empty_check=False).decode("pil")
    for sample in dataset:
        image = next(v for k, v in sample.items() if k in ("png", "jpg"))
        want = truth[sample["json"]["record_id"]]
        assert manifest["labels"][sample["cls"]] == want["label"] == sample["json"]["label"]
        assert np.array_equal(np.asarray(image.convert("RGB")), _pixels(want["image"]))
        seen.append(sample["__key__"])
    assert len(seen) == len(set(seen)) == manifest["rows"]["train"]


def _tarfile_shard(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode, info.uname, info.gname = len(data), 0, 0o444, "", ""
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_tar_shards_are_the_bytes_tarfile_writes_and_split_between_samples():
    rng = np.random.default_rng(1)
    samples = [
        (f"{i:064x}", {"png": rng.bytes(int(rng.integers(0, 3000))), "cls": str(i % 4).encode(), "json": b"{}"})
        for i in range(40)
    ]
    samples.append(("d" * 60 + "/" + "k" * 60, {"bin": b"x" * 513, "cls": b""}))  # over 100 bytes: ustar's prefix
    shards = list(write_tar_shards(samples, 32 * 1024, "train"))
    assert len(shards) > 1 and all(len(data) <= 32 * 1024 for _, data in shards)
    assert [name for name, _ in shards] == [f"train-{i:06d}.tar" for i in range(len(shards))]
    members = [(f"{key}.{ext}", data) for key, exts in samples for ext, data in exts.items()]
    sample_ends = set(np.cumsum([len(exts) for _, exts in samples]).tolist())
    start = 0
    for _, data in shards:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            count = len(tar.getmembers())
        assert data == _tarfile_shard(members[start : start + count])
        start += count
        assert start in sample_ends  # a sample's members stay in one shard
    assert start == len(members)


def test_the_exports_tar_check_reads_members_as_tarfile_does_and_names_a_bad_header():
    from corpus.exports.export import _tar_members

    rng = np.random.default_rng(2)
    samples = [(f"{i:064x}", {"png": rng.bytes(int(rng.integers(0, 2000))), "cls": b"1"}) for i in range(12)]
    samples.append(("d" * 60 + "/" + "k" * 60, {"bin": b"x" * 513}))  # over 100 bytes: ustar's prefix field
    ((_, data),) = write_tar_shards(samples, 10**7, "train")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        want = [(m.name, m.offset_data, m.size) for m in tar]
    assert list(_tar_members("train-000000.tar", data)) == want
    second_header = -(-want[0][2] // 512) * 512 + 512
    broken = bytearray(data)
    broken[second_header + 5] ^= 1
    with pytest.raises(ExportError, match=f"train-000000.tar: a bad tar header .* at byte {second_header}"):
        list(_tar_members("train-000000.tar", bytes(broken)))
    with pytest.raises(ExportError, match="ends without tar's end-of-archive block"):
        list(_tar_members("train-000000.tar", data[:second_header]))


def test_imagefolder_export_reads_with_a_torch_dataset(tmp_path):
    torch = pytest.importorskip("torch")
    root, manifest = _release(tmp_path)
    export_release(root, "animals", "latest", "imagefolder", str(tmp_path / "if"))

    class ImageFolderTree(torch.utils.data.Dataset):
        """torchvision's ImageFolder contract over <split>/<label>/<file>, written here without torchvision."""

        def __init__(self, folder):
            self.classes = sorted(p.name for p in folder.iterdir())
            self.items = [(p, i) for i, c in enumerate(self.classes) for p in sorted((folder / c).iterdir())]

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            path, index = self.items[i]
            pixels = np.asarray(Image.open(path).convert("RGB"))
            return torch.from_numpy(pixels.copy()).permute(2, 0, 1), index, path.stem

    truth = _by_id(root)
    for split in ("train", "val", "test"):
        tree = ImageFolderTree(tmp_path / "if" / split)
        assert len(tree) == manifest["rows"][split]
        loader = torch.utils.data.DataLoader(tree, batch_size=8)
        for images, indices, ids in loader:
            assert images.shape[1:] == (3, 12, 12)
            for image, index, rid in zip(images, indices.tolist(), ids, strict=True):
                assert tree.classes[index] == truth[rid]["label"]
                assert np.array_equal(image.permute(1, 2, 0).numpy(), _pixels(truth[rid]["image"]))
    assert ImageFolderTree(tmp_path / "if" / "train").classes == manifest["labels"]


def test_csv_export_reads_with_pandas(tmp_path):
    root, manifest = _release(tmp_path)
    export_release(root, "animals", "v0001", "csv", str(tmp_path / "csv"))
    truth = _by_id(root)
    for split in ("train", "val", "test"):
        df = pd.read_csv(tmp_path / "csv" / f"{split}.csv")
        assert len(df) == manifest["rows"][split] and set(df["split"]) <= {split}
        for row in df.itertuples():
            assert row.label == truth[row.record_id]["label"] == manifest["labels"][row.label_index]
            assert (tmp_path / "csv" / row.file_name).read_bytes() == truth[row.record_id]["image"]


def test_a_shard_that_storage_alters_while_it_is_written_fails_the_export_and_leaves_nothing(tmp_path, monkeypatch):
    from corpus.exports import export as export_module

    root, _ = _release(tmp_path, n=40)
    write = export_module._LocalWriter.write

    def flip_one_byte(self, path: str, data: bytes) -> None:  # the fault: a disk that returns other bytes
        write(self, path, data[:-600] + bytes([data[-600] ^ 1]) + data[-599:] if path.endswith(".tar") else data)

    monkeypatch.setattr(export_module._LocalWriter, "write", flip_one_byte)
    with pytest.raises(ExportError, match=r"train-000000\.tar changed while it was written"):
        export_release(root, "animals", 1, "webdataset", str(tmp_path / "wds"))
    assert not list((tmp_path / "wds").rglob("*")) and not list(tmp_path.glob(".tmp-export-*"))


def test_an_export_is_idempotent_and_a_folder_holds_one_export(tmp_path):
    root, _ = _release(tmp_path)
    dest = tmp_path / "exports" / "hf"
    first = export_release(root, "animals", "v0001", "hf", str(dest))
    before = {p: p.stat().st_mtime_ns for p in dest.rglob("*")}
    again = export_release(root, "animals", "v0001", "hf", str(dest))
    assert again["unchanged"] and not first["unchanged"] and again["files"] == first["files"]
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*")} == before
    assert verify_export(DataRoot(str(dest)))["release_id"] == first["release_id"]
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".tmp")]
    with pytest.raises(ExportError, match="already holds a hf export of animals/v0001"):
        export_release(root, "animals", "v0001", "csv", str(dest))
    build_release(root, "animals", make_records(30, seed=9, prefix="n"), ReleaseConfig())
    with pytest.raises(ExportError, match="already holds"):
        export_release(root, "animals", "v0002", "hf", str(dest))
    (dest / "data" / "train-00000-of-00001.parquet").write_bytes(b"tampered")
    with pytest.raises(ExportError, match="was modified"):
        verify_export(DataRoot(str(dest)))
    # The default place is exports/<dataset>/<vN>/<format> under the data root.
    default = export_release(root, "animals", "v0002", "csv")
    assert default["path"].endswith("exports/animals/v0002/csv") and default["splits"]["train"] > 0


def test_a_tampered_release_is_refused_and_nothing_is_written(tmp_path):
    root, _ = _release(tmp_path)
    path = tmp_path / "root/releases/animals/v0001/train.parquet"
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ReleaseIntegrityError, match=r"train\.parquet was modified"):
        export_release(root, "animals", "v0001", "imagefolder", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    with pytest.raises(ValueError, match="unknown export format"):
        export_release(root, "animals", "v0001", "parquet-zip", str(tmp_path / "out"))


@pytest.mark.s3
def test_an_export_to_s3_is_verified_and_idempotent(tmp_path, moto_s3):
    root, manifest = _release(tmp_path)
    dest, bucket = moto_s3.open_root("exports", "animals/v0001/webdataset")
    out = export_release(root, "animals", "v0001", "webdataset", dest, shard_bytes=64 * 1024)
    assert out["path"] == f"s3://{bucket}/animals/v0001/webdataset" and not out["unchanged"]
    keys = [o["Key"] for o in moto_s3.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert "animals/v0001/webdataset/export.json" in keys and not [k for k in keys if "pending" in k]
    assert verify_export(dest)["splits"] == out["splits"] == {s: manifest["rows"][s] for s in ("train", "val", "test")}
    assert export_release(root, "animals", "v0001", "webdataset", dest, shard_bytes=64 * 1024)["unchanged"]
    with pytest.raises(ExportError, match="already holds"):
        export_release(root, "animals", "v0001", "webdataset", dest, shard_bytes=128 * 1024)

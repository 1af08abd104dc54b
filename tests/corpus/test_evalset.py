"""The fixed evaluation set: chosen once from test items, kept by every later release, frozen at its target."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pytest

from corpus.releases.build import build_release
from corpus.releases.config import ReleaseConfig
from corpus.releases.evalset import compute_eval_set_id, parent_eval_ids
from corpus.releases.versions import ReleaseIntegrityError, load_release
from corpus.store import DataRoot
from tests.corpus.test_releases import make_records


def _splits(root: DataRoot, version: str) -> dict[str, str]:
    release = load_release(root, "animals", version)
    table = pa.concat_tables([release.train, release.val, release.test])
    return dict(zip(table.column("record_id").to_pylist(), table.column("split").to_pylist(), strict=True))


def test_eval_set_grows_from_test_items_to_its_target_then_stays_frozen(tmp_path):
    root = DataRoot(str(tmp_path))
    cfg = ReleaseConfig(eval_set_size=40)
    first = make_records(60, seed=1)
    m1 = build_release(root, "animals", first, cfg)
    e1 = m1["eval_set"]
    # 60 items hold ~9 test items: all of them form the set, which says it is still growing.
    assert e1["since"] == "v0001" and not e1["frozen"] and e1["size"] == m1["rows"]["test"]
    assert set(e1["record_ids"]) == {r for r, s in _splits(root, "v0001").items() if s == "test"}

    second = pa.concat_tables([first, make_records(300, seed=2, prefix="b-")])
    m2 = build_release(root, "animals", second, cfg)
    e2 = m2["eval_set"]
    assert set(e1["record_ids"]) <= set(e2["record_ids"]) and e2["frozen"] and e2["since"] == "v0001"
    assert 40 <= e2["size"] < 40 + 3  # whole groups join: a planted cluster has at most 3 rows
    assert e2["added"] == e2["size"] - e1["size"] and e2["removed"] == 0
    assert sum(e2["class_counts"].values()) == e2["size"] and len(e2["class_counts"]) == 3
    splits2 = _splits(root, "v0002")
    assert all(splits2[r] == "test" for r in e2["record_ids"])

    third = pa.concat_tables([second, make_records(200, seed=3, prefix="c-")])
    m3 = build_release(root, "animals", third, cfg)
    assert m3["eval_set"]["id"] == e2["id"] == compute_eval_set_id(e2["record_ids"])
    assert m3["eval_set"]["added"] == 0 and m3["rows"]["test"] > m2["rows"]["test"]
    splits3 = _splits(root, "v0003")
    assert all(splits3[r] == "test" for r in e2["record_ids"])  # never moved to train or val


def test_an_item_that_leaves_the_release_leaves_the_set_and_is_counted(tmp_path):
    root = DataRoot(str(tmp_path))
    cfg = ReleaseConfig(eval_set_size=10)
    records = make_records(150, seed=4)
    e1 = build_release(root, "animals", records, cfg)["eval_set"]
    gone = e1["record_ids"][0]
    kept = records.filter(pa.compute.not_equal(records.column("record_id"), gone))
    e2 = build_release(root, "animals", kept, cfg)["eval_set"]
    assert e2["removed"] == 1 and gone not in e2["record_ids"] and e2["id"] != e1["id"]


def test_eval_scores_reach_the_manifest_and_the_card_and_the_digest_covers_the_set(tmp_path):
    root = DataRoot(str(tmp_path))
    seen: list[int] = []

    def scorer(rows: pa.Table) -> list[dict]:
        seen.append(rows.num_rows)
        return [{"release": "v0000", "model_version": "animals-v0000-m001", "accuracy": 0.625, "n": rows.num_rows}]

    m = build_release(root, "animals", make_records(150, seed=5), ReleaseConfig(eval_set_size=15), eval_scorer=scorer)
    assert seen == [m["eval_set"]["size"]] and m["eval_scores"][0]["accuracy"] == 0.625
    card = (tmp_path / "releases/animals/v0001/card.html").read_text()
    assert "Fixed evaluation set" in card and "animals-v0000-m001" in card and "0.625" in card

    path = tmp_path / "releases/animals/v0001/manifest.json"
    manifest = json.loads(path.read_text())
    manifest["eval_set"]["record_ids"] = manifest["eval_set"]["record_ids"][1:]
    os.chmod(path, 0o644)
    path.write_text(json.dumps(manifest))
    with pytest.raises(ReleaseIntegrityError, match="manifest"):
        load_release(root, "animals", "v0001")


def test_a_parent_from_before_eval_sets_hands_down_its_test_split():
    assert parent_eval_ids(None, []) == []
    assert parent_eval_ids({"version": "v0001"}, ["t1", "t2"]) == ["t1", "t2"]
    assert parent_eval_ids({"eval_set": {"record_ids": ["t2"]}}, ["t1", "t2"]) == ["t2"]

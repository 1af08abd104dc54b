"""Task types: the known names, what old manifests and rounds read as, and where the release records its type."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from corpus.releases.build import build_release
from corpus.releases.config import ReleaseConfig
from corpus.schema import ANNOTATION_SCHEMA, PREDICTION_SCHEMA, RECORD_SCHEMA
from corpus.store import DataRoot
from corpus.tasks import ANSWER_COLUMN, RECORD_KIND, TASK_TYPES, check_task, task_of
from labeling.round_state import LabelRound, open_round
from labeling.round_store import save_round
from pipelines.config import LabelRoundParams, ReleaseParams
from pipelines.release import release_task_type
from tests.corpus.test_releases import make_records


def test_every_task_type_names_a_record_column_and_kind():
    for task in TASK_TYPES:
        assert RECORD_SCHEMA.get_field_index(ANSWER_COLUMN[task]) >= 0, task
        assert RECORD_KIND[task] in ("image", "text")
    for column in ("labels", "boxes"):
        assert ANNOTATION_SCHEMA.get_field_index(column) >= 0
    assert PREDICTION_SCHEMA.get_field_index("boxes") >= 0


@pytest.mark.parametrize("bad", ["", "Classify", "detection", "multi-label", "segment", None])
def test_an_unknown_task_type_is_refused_naming_the_known_ones(bad):
    with pytest.raises(ValueError, match="expected one of classify, multilabel, detect, text"):
        check_task(bad)


def test_manifests_and_rounds_written_before_task_types_read_as_classify():
    assert task_of({}) == "classify" and task_of({"task": None}) == "classify"
    assert task_of({"task": "detect"}) == "detect"
    with pytest.raises(ValueError, match="unknown task type 'boxes'"):
        task_of({"task": "boxes"})
    data = open_round(
        "d", 1, 3, pool="p", labels=["a", "b"], strategy="random", model_version=None, record_ids=["r"],
        gold=[], params={}, now=datetime(2026, 1, 1, tzinfo=UTC), deadline_hours=1,
    ).to_dict()  # fmt: skip
    data.pop("task")
    assert LabelRound.from_dict(data).task == "classify"
    with pytest.raises(ValueError):
        LabelRoundParams(labels=["a", "b"], task="boxes")


def test_the_release_records_its_task_from_the_config_the_round_or_the_newest_round(tmp_path):
    root = DataRoot(str(tmp_path))
    assert release_task_type(root, ReleaseParams(dataset="d")) == "classify"  # no rounds yet
    for number, task in ((1, "multilabel"), (2, "text")):
        save_round(
            root,
            open_round(
                "d", number, 3, pool="p", labels=["a", "b"], strategy="random", model_version=None,
                record_ids=["r"], gold=[], params={}, now=datetime(2026, 1, 1, tzinfo=UTC), deadline_hours=1,
                task=task,
            ),
        )  # fmt: skip
    assert release_task_type(root, ReleaseParams(dataset="d")) == "text"
    assert release_task_type(root, ReleaseParams(dataset="d", round=1)) == "multilabel"
    given = ReleaseParams(dataset="d", round=1, release=ReleaseConfig(task="detect"))
    assert release_task_type(root, given) == "detect"
    manifest = build_release(root, "animals", make_records(30), ReleaseConfig(task="text"))
    assert manifest["task"] == "text"
    assert build_release(root, "plants", make_records(30), ReleaseConfig())["task"] == "classify"

"""How a release is split, augmented and described: ReleaseConfig, the release flow's own settings."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from corpus.releases.recipes import AugmentationRecipe
from corpus.tasks import TaskType


class ReleaseConfig(BaseModel):
    """How a release is split, augmented and described."""

    task: TaskType | None = Field(
        None,
        description="The task type whose answers this release carries (corpus.tasks), written to the manifest; "
        "empty: the task of the dataset's newest label round (classify for a dataset without rounds).",
    )
    # 70/15/15 is the common default of dataset tooling (e.g. scikit-learn examples, HF split recipes).
    train: float = Field(0.7, ge=0.0, le=1.0, description="Target fraction of each label in train.")
    val: float = Field(0.15, ge=0.0, le=1.0, description="Target fraction of each label in val.")
    test: float = Field(0.15, ge=0.0, le=1.0, description="Target fraction of each label in test.")
    split_key: str = Field(
        "flywheel-split-v1", description="Salt of the keyed hash ordering new groups; change it to reshuffle."
    )
    # 100 items: the floor for a comparison that means something (at 100 items one standard error of
    # an accuracy near 0.8 is 0.04, so a 0.1 gain is visible); raise it for datasets with many classes.
    eval_set_size: int = Field(
        100, ge=1, description="Target size of the fixed evaluation set (test items kept by every later version)."
    )
    group_by_page: bool = Field(True, description="Keep images that share a page_url in one split.")
    augmentation: AugmentationRecipe = Field(default_factory=AugmentationRecipe)
    description: str = Field("", description="What the dataset is for; on the card, the manifest and exports.")
    licence: str | None = Field(
        None, description="The licence the released data is under (an SPDX id such as CC-BY-4.0, or a sentence)."
    )
    card_thumbs_per_class: int = Field(4, ge=0, description="Thumbnails per class on card.html.")
    card_thumb_px: int = Field(96, ge=16, description="Longest side of a card thumbnail, in pixels.")

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> ReleaseConfig:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1, got {total:.4f}")
        return self

    def fractions(self) -> dict[str, float]:
        return {"train": self.train, "val": self.val, "test": self.test}

"""How a model is trained: TrainConfig, the train flow's own settings, each with where its default comes from."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class TrainConfig(BaseModel):
    """How a model is trained."""

    image_size: int = Field(64, ge=8, description="Side of the square input, in pixels.")
    epochs: int = Field(30, ge=1, description="Most epochs to run.")
    batch_size: int = Field(32, ge=1, description="Images per forward pass.")
    accumulate: int = Field(
        1, ge=1, description="Batches per optimizer step (gradient accumulation): effective batch = batch_size x this."
    )
    # 3e-3 with AdamW suits a small BN CNN from scratch (measured on the synthetic test set; 1e-3 is slower).
    lr: float = Field(3e-3, gt=0, description="AdamW learning rate (cosine-annealed to 0).")
    # torch.optim.AdamW's own default.
    weight_decay: float = Field(1e-2, ge=0)
    width: int = Field(32, ge=4, description="Channels of the first SmallCNN block.")
    dropout: float = Field(0.2, ge=0, lt=1)
    recipe: str | None = Field(
        None, description="Augmentation recipe; empty = the one the release records (the reproducible choice)."
    )
    eval_recipe: str | None = Field(None, description="Recipe for val, test and prediction; empty = the release's.")
    seed: int = 0
    # Early stopping patience: a common default (Keras examples use 5-10) for runs of ~30 epochs.
    patience: int = Field(8, ge=1, description="Stop after this many epochs without a better val accuracy.")
    num_workers: int | None = Field(
        None, ge=0, description="DataLoader workers; empty = sized to the machine (CUDA: CPUs - 1; CPU: 0)."
    )
    worker_start: Literal["spawn", "forkserver", "fork"] = Field(
        "spawn", description="How loader workers start: spawn is safe beside Prefect's threads; fork starts faster."
    )
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="Autocast dtype: auto = bf16 on CUDA that supports it (else fp16), fp32 on CPU."
    )
    channels_last: bool = Field(True, description="NHWC memory format (faster convolutions on tensor cores).")
    resume: bool = Field(True, description="Continue from the last checkpoint of an identical interrupted run.")
    device: str = Field("auto", description="'auto' (cuda if available), 'cpu', 'cuda' or 'cuda:N'.")

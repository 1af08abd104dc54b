"""How a model is trained: TrainConfig, the train flow's own settings, and SimCLRConfig, the pool encoder's; each
with where its default comes from."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator


class TrainConfig(BaseModel):
    """How a model is trained."""

    # The small CNN is the default: the product's images are small and it trains in seconds on a CPU.
    backbone: Literal["small-cnn", "resnet18", "resnet34", "resnet50"] = Field(
        "small-cnn", description="Network: the small CNN (tiny inputs, from scratch) or a ResNet (torchvision names)."
    )
    weights: str | None = Field(
        None,
        description="Pretrained weights: a path under the data root, an absolute path or an fsspec URL "
        "(s3://, https://); safetensors or a torch state dict. Empty = random initialisation.",
    )
    weights_sha256: str | None = Field(
        None, description="Pin of the weights file: its sha256 (or a prefix of >= 8 hex digits, as torchvision names)."
    )
    init_from_encoder: str | None = Field(
        None,
        description="Start from the pool's SimCLR encoder instead of `weights`: 'newest' or an encoder version "
        "(same backbone and width). Empty = not.",
    )
    # sgd: the loop trains the head like any layer. logistic: SimCLR's own linear evaluation (training.encoder_init).
    head_fit: Literal["sgd", "logistic"] = Field(
        "sgd", description="With linear-probe: train the head by SGD epochs, or fit it by logistic regression."
    )
    transfer: Literal["fine-tune", "linear-probe", "freeze-stem"] = Field(
        "fine-tune",
        description="What trains: everything; only the classifier head; or everything but the stem (conv1 + bn1).",
    )
    # cosine to 0 per epoch was the loop's only schedule before; kept as the default.
    lr_schedule: Literal["cosine", "constant", "one-cycle"] = Field(
        "cosine",
        description="cosine-annealed per epoch to 0; constant; or one-cycle (warm-up to lr then down, per step).",
    )
    image_size: int = Field(64, ge=8, description="Side of the square input, in pixels.")
    epochs: int = Field(30, ge=1, description="Most epochs to run.")
    batch_size: int = Field(32, ge=1, description="Images per forward pass.")
    accumulate: int = Field(
        1, ge=1, description="Batches per optimizer step (gradient accumulation): effective batch = batch_size x this."
    )
    # 3e-3 with AdamW suits a small BN CNN from scratch (measured on the synthetic test set; 1e-3 is slower).
    lr: float = Field(3e-3, gt=0, description="AdamW learning rate (peak for one-cycle; see lr_schedule).")
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
    # auto: on. NHWC feeds tensor cores on CUDA; on CPU a ResNet-18 train step measured 1.21x faster with
    # it (ABBA in one run, bench/TRAIN.md). True/False are read as on/off (older configs).
    channels_last: Literal["auto", "on", "off"] = Field(
        "auto", description="NHWC memory format: auto = on (CUDA and CPU, measured faster on both); or on / off."
    )
    # Off by default: compiling costs tens of seconds up front (minutes on a CPU), which a small model's run
    # never wins back; on a GPU with a ResNet it usually pays from the first few epochs.
    compile: bool = Field(False, description="torch.compile the training forward; falls back to eager if it fails.")
    resume: bool = Field(True, description="Continue from the last checkpoint of an identical interrupted run.")
    devices: int = Field(
        1,
        ge=1,
        description="Processes under torchrun DDP, one GPU each (or CPU with gloo); batch_size is per process.",
    )
    device: str = Field("auto", description="'auto' (cuda if available), 'cpu', 'cuda' or 'cuda:N'.")

    @field_validator("channels_last", mode="before")
    @classmethod
    def _boolean_channels_last(cls, value: object) -> object:
        if isinstance(value, bool):
            return "on" if value else "off"
        return value

    @model_validator(mode="after")
    def _frozen_parts_need_weights(self) -> TrainConfig:
        # Freezing randomly initialised layers only throws capacity away: a config error, not a silent choice.
        if self.transfer != "fine-tune" and not (self.weights or self.init_from_encoder):
            raise ValueError(f"transfer={self.transfer!r} freezes layers, so it needs pretrained `weights`")
        if self.weights and self.init_from_encoder:
            raise ValueError("give either `weights` or `init_from_encoder`, not both")
        if self.head_fit == "logistic" and self.transfer != "linear-probe":
            raise ValueError("head_fit='logistic' fits only the head, so it needs transfer='linear-probe'")
        return self


class SimCLRConfig(BaseModel):
    """How the pool encoder is pretrained; each default says where it comes from."""

    backbone: Literal["small-cnn", "resnet18", "resnet34", "resnet50"] = Field(
        "small-cnn", description="Network to pretrain (training.backbones); its pooled features are the embedding."
    )
    width: int = Field(32, ge=4, description="Channels of the first SmallCNN block (as TrainConfig).")
    image_size: int = Field(64, ge=16, description="Side of each view, in pixels (the train loop's default, 64).")
    # "few epochs": the paper trains 100-1000. 30 takes minutes on a CPU for 10^3 small images but leaves the
    # loss near chance (bench/README.md, "Semantic near-duplicates"); on a GPU, raise it.
    epochs: int = Field(30, ge=1, description="Passes over the pool.")
    # The paper's batch is 256-8192; 256 is its smallest and fits a CPU; a pool smaller than it is one batch.
    batch_size: int = Field(256, ge=2, description="Images per batch (2 views each).")
    # The paper's CIFAR-10 setting (Appendix B.9) and the brief's: 0.5.
    temperature: float = Field(0.5, gt=0, description="NT-Xent temperature tau.")
    # 128-d output of a 2-layer MLP: the paper's projection head (Section 2.1, Figure 8).
    projection_dim: int = Field(128, ge=8, description="Output size of the projection head.")
    # The paper's LARS only pays at batches >= 1024. Small-batch re-implementations use AdamW: the UvA deep
    # learning course's SimCLR tutorial 5e-4 with weight decay 1e-4; 1e-3 here because the runs are short.
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate, cosine-annealed over the epochs.")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay (the paper: 1e-6 with LARS).")
    seed: int = 0
    num_workers: int | None = Field(None, ge=0, description="DataLoader workers; empty = sized to the machine.")
    device: str = Field("auto", description="'auto' (cuda if available), 'cpu', 'cuda' or 'cuda:N'.")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field("auto", description="Autocast dtype, as TrainConfig.")

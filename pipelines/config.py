"""Flow parameters: one pydantic model per flow, composed from the stages' own config models."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from corpus.releases.config import ReleaseConfig
from corpus.stages import AUTO_SHARD_BYTES, AUTO_SHARD_ROWS, ShardSize
from corpus.tasks import TaskType
from crawlers.config import CrawlConfig
from crawlers.importers.config import ImportConfig
from curation.curate_config import CurateConfig
from curation.scrub import ScrubConfig
from labeling.gate import QualityGate
from training.config import SimCLRConfig, TrainConfig


class ScaleParams(BaseModel):
    """How curation spreads out: shards of the input, hash partitions of the duplicate search, and where they run."""

    shards: int | None = Field(
        None,
        ge=1,
        description="Input shards curated as separate tasks (2 or more spread them over the task runner). "
        "Default: sized from the input (at most shard_rows rows or shard_mb MB each) and run one after another "
        "in one task, so memory stays bounded whatever the input's size. Each task costs ~0.3 s of overhead on "
        "a Dask worker (notes/prefect-stack.md), so give each shard thousands of rows.",
    )
    shard_rows: int = Field(AUTO_SHARD_ROWS, ge=1, description="Rows per automatic shard at most.")
    shard_mb: int = Field(
        AUTO_SHARD_BYTES // 2**20, ge=1, description="MiB of uncompressed input per automatic shard at most."
    )
    partitions: int | None = Field(
        None, ge=1, description="Hash partitions of the duplicate search; default: as many as shards."
    )
    dask: bool = Field(
        False,
        description="Run the shards on Dask: the cluster at FLYWHEEL_DASK_ADDRESS, else a LocalCluster of "
        "FLYWHEEL_DASK_WORKERS processes started for the run. Off: shards run on threads in the flow's process.",
    )

    @property
    def shard_size(self) -> ShardSize:
        """The most one automatic shard holds."""
        return ShardSize(rows=self.shard_rows, bytes=self.shard_mb * 2**20)

    @property
    def spread(self) -> bool:
        """Whether the shards run as tasks on a task runner (asked for), not one after another in one task."""
        return (self.shards or 1) > 1 or self.dask


class CurateParams(BaseModel):
    """curate -> scrub over raw crawl folders."""

    inputs: list[str] = Field(
        ..., min_length=1, description="Raw folders (relative to the data root), e.g. raw/crawl-..."
    )
    curate: CurateConfig = Field(default_factory=CurateConfig)
    scrub: ScrubConfig = Field(default_factory=ScrubConfig)
    scale: ScaleParams = Field(default_factory=ScaleParams, description="Sharding and Dask.")
    data_root: str | None = Field(None, description="Data root URL; defaults to FLYWHEEL_DATA_ROOT.")


class IngestParams(BaseModel):
    """crawl -> curate -> scrub."""

    crawl: CrawlConfig
    curate: CurateConfig = Field(default_factory=CurateConfig)
    scrub: ScrubConfig = Field(default_factory=ScrubConfig)
    scale: ScaleParams = Field(default_factory=ScaleParams, description="Sharding and Dask.")
    data_root: str | None = Field(None, description="Data root URL; defaults to FLYWHEEL_DATA_ROOT.")


class LabelRoundParams(BaseModel):
    """A label round: the batch chosen from the pool and pushed to Label Studio, and how it is closed and judged."""

    dataset: str = Field("demo", description="Dataset name; the round's model is this dataset's newest.")
    pool: str | None = Field(None, description="Folder of scrubbed kept records; default: the latest ingest's.")
    labels: list[str] = Field(..., min_length=2, description="The label set annotators choose from.")
    task: TaskType = Field(
        "classify",
        description="What annotators do: classify (one label per image), multilabel (every label that applies), "
        "detect (boxes with labels) or text (one label per text record). One task type per dataset.",
    )
    project_title: str | None = Field(
        None,
        min_length=3,
        description="Label Studio project title (default 'Flywheel <dataset>'): one project per dataset and label "
        "set; pushing another label set into it is refused.",
    )
    definitions: dict[str, str] = Field(
        default_factory=dict,
        description="Label -> what it means, shown to annotators as the project's instructions (with examples).",
    )
    examples: dict[str, list[str]] = Field(
        default_factory=dict, description="Label -> URLs of example images shown in the instructions."
    )
    budget: int = Field(80, ge=1, description="Tasks pushed this round.")
    strategy: str = Field(
        "auto",
        description="auto (hybrid: uncertainty pre-filter + diversity when a model exists; else typiclust when a "
        "pretrained encoder's embeddings cover the pool, else diversity), typiclust, probcover, diversity, coreset, "
        "uncertainty, least-confidence, margin, entropy, hybrid or random.",
        pattern="^(auto|diversity|typiclust|probcover|coreset|uncertainty|least-confidence|margin|entropy|hybrid"
        "|random)$",
    )
    overlap_fraction: float = Field(0.3, ge=0, le=1, description="Share of tasks labeled by several annotators.")
    overlap_k: int = Field(2, ge=1, description="Annotators per overlapping task (set per task in Label Studio).")
    annotators: int | None = Field(
        None,
        ge=1,
        description="People labeling this round (each answers every gold task); empty: the Label Studio "
        "organization's members other than Flywheel's own account.",
    )
    deadline_hours: float = Field(
        72.0, gt=0, description="The round closes after this long even if unfinished (3 days: a working week's pace)."
    )
    idle_after_hours: float | None = Field(
        24.0,
        gt=0,
        description="Someone who answered nothing of the round for this long no longer owes the round's gold answers, "
        "so one person who stops half-way does not hold the round open until its deadline (a day: overnight pauses "
        "keep a person's gold owed). Empty: everyone who took part answers every gold task.",
    )
    min_share_done: float = Field(
        0.8,
        ge=0,
        le=1,
        description="At its deadline a round passes only if at least this share of its planned annotations is done "
        "(and its quality gate holds).",
    )
    next_budgets: list[int] | None = Field(
        None,
        description="Budgets of the rounds the trained-model automation opens after this one, in order: "
        "empty = no more rounds, unset = this round's budget again each time.",
    )
    if_open: str = Field(
        "refuse",
        pattern="^(refuse|skip)$",
        description="When the dataset already has an open round: refuse (an error) or skip (nothing pushed, no error; "
        "what a schedule wants).",
    )
    min_per_class: int = Field(2, ge=0, description="At least this many tasks per predicted class (class balance).")
    gold_path: str | None = Field(
        None, description="JSON file under the data root: record_id -> known label, mixed into batches as gold."
    )
    gold_per_round: int = Field(4, ge=0, description="Gold tasks mixed into each batch (when gold_path is set).")
    review_threshold: float = Field(
        0.8, ge=0, le=1, description="Labels with a lower posterior go to the review tab (bench/LABELING.md)."
    )
    review_thresholds: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=dict,
        description="multilabel: a review threshold per label (label -> value in [0, 1]); the others use "
        "review_threshold. A label annotators find hard to see can be held to a lower bar.",
    )
    gate: QualityGate = Field(
        default_factory=QualityGate,
        description="What the round must reach to be released; a passing round emits flywheel.round.passed.",
    )
    seed: int = 0
    data_root: str | None = None

    @property
    def project(self) -> str:
        """The Label Studio project of this dataset."""
        return self.project_title or f"Flywheel {self.dataset}"


class ReleaseParams(BaseModel):
    """Build the next immutable release of a dataset from the pool and the pulled annotations."""

    dataset: str = "demo"
    pool: str | None = Field(None, description="Folder of scrubbed kept records; default: the latest ingest's.")
    release: ReleaseConfig = Field(default_factory=ReleaseConfig)
    gold_path: str | None = Field(None, description="Gold answers (record_id -> label) that pin Dawid-Skene.")
    round: int | None = Field(None, ge=1, description="The label round whose passing started this release, if any.")
    trusted_origins: list[str] | None = Field(
        None,
        description="Label origins (imported:<source>) whose labels are taken as they are (label_source "
        "imported:<source>, confidence 1) instead of voting in aggregation; empty (None): every import whose "
        "_report.json under raw/ has label_policy trusted. [] trusts none.",
    )
    exports: list[Literal["imagefolder", "hf", "webdataset", "csv", "coco", "yolo"]] = Field(
        default_factory=list,
        description="Formats written under exports/<dataset>/<vN>/ once the release is published: imagefolder, hf, "
        "webdataset, csv; coco and yolo for a release whose records carry boxes (e.g. a trusted COCO/YOLO import).",
    )
    data_root: str | None = None


class TrainParams(BaseModel):
    """Train on a release and score the unlabeled pool for the next round."""

    dataset: str = "demo"
    version: str = Field("latest", description="Release version (v0001) or latest.")
    pool: str | None = Field(None, description="Folder of records to score after training; none skips scoring.")
    train: TrainConfig = Field(default_factory=TrainConfig)
    data_root: str | None = None


class PretrainParams(BaseModel):
    """Pretrain an encoder on the unlabeled pool (SimCLR); its embeddings drive the cold-start selection."""

    pool: str | None = Field(None, description="Folder of records to pretrain on; empty = the latest pool.")
    simclr: SimCLRConfig = Field(default_factory=SimCLRConfig)
    data_root: str | None = None


class ImportParams(BaseModel):
    """import -> curate -> scrub: a team's own images (folder, ImageFolder, bucket, manifest, label export)."""

    source: ImportConfig = Field(..., description="What to import and how its labels are used.")
    curate: CurateConfig = Field(default_factory=CurateConfig)
    scrub: ScrubConfig = Field(default_factory=ScrubConfig)
    scale: ScaleParams = Field(default_factory=ScaleParams, description="Sharding and Dask.")
    data_root: str | None = Field(None, description="Data root URL; defaults to FLYWHEEL_DATA_ROOT.")

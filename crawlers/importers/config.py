"""The import config: one model of what an import reads, what it calls itself, and how its labels are used."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SourceKind = Literal["auto", "folder", "imagefolder", "manifest", "label-studio", "coco", "yolo", "hf"]


class ImportLabelPolicy(StrEnum):
    """How labels that come with an import are used.

    preannotate: shown to annotators as predictions to confirm (imports/<source>/labels/, PREDICTION_SCHEMA);
    annotator: one more annotator's vote in aggregation (annotations/, annotator `imported:<source>`);
    trusted: taken as the label (annotations/ as well; the release marks it `imported:<source>`).
    """

    preannotate = "preannotate"
    annotator = "annotator"
    trusted = "trusted"


# A shard holds at most this many rows or bytes of content, whichever comes first: 500 rows is the crawler's
# FLYWHEEL_SHARD_ROWS; 64 MB bounds memory when the files are large photos (500 x 12 MB would be 6 GB).
SHARD_ROWS = 500
SHARD_BYTES = 64 * 1024 * 1024


class ImportConfig(BaseModel):
    """What to import: a local path or s3:// prefix, read as `kind`, stored as source `name`."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        ...,
        min_length=1,
        description="A local folder, an ImageFolder tree, an s3://bucket/prefix, a CSV/JSONL/Parquet manifest, "
        "a Label Studio JSON export, a COCO JSON file, a YOLO folder (images/, labels/, data.yaml or classes.txt), "
        "or a Hugging Face datasets Parquet folder.",
    )
    name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Source name stored on every record and in label origins (imported:<name>); default: the "
        "source's last path component.",
    )
    kind: SourceKind = Field(
        "auto",
        description="auto: .csv/.jsonl/.parquet files are manifests, .json files Label Studio exports or COCO "
        "(by content), a folder with images/, labels/ and data.yaml or classes.txt a YOLO folder, "
        "a folder with dataset_info.json or only Parquet files a Hugging Face dataset, a folder "
        "holding only sub-folders an ImageFolder tree (class = sub-folder), any other folder a plain folder.",
    )
    media_root: str | None = Field(
        None, description="Where relative paths in a manifest, export or COCO file start; default: its folder."
    )
    label_policy: ImportLabelPolicy = Field(
        ImportLabelPolicy.preannotate, description="How imported labels are used (see ImportLabelPolicy)."
    )
    allowed_private_hosts: list[str] | None = Field(
        None,
        description="Origins (scheme://host:port) on private or loopback addresses that manifest URLs may reach; "
        "as for a crawl, everything else on such addresses is refused after DNS resolution.",
    )
    fetch_delay_s: float = Field(
        0.25, ge=0, description="Least seconds between two requests to one host; robots.txt Crawl-delay wins."
    )
    shard_rows: int = Field(SHARD_ROWS, ge=1, description="Rows per raw shard at most.")
    shard_bytes: int = Field(SHARD_BYTES, ge=1, description="Content bytes per raw shard at most.")

    @field_validator("source")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    @property
    def source_name(self) -> str:
        """`name`, else the last path component of `source` (without a file extension)."""
        if self.name:
            return self.name
        tail = self.source.rstrip("/").rsplit("/", 1)[-1] or "import"
        stem = tail.rsplit(".", 1)[0] if "." in tail else tail
        cleaned = "".join(c if c.isalnum() or c in "_.-" else "-" for c in stem).strip("-.") or "import"
        return cleaned

    @property
    def label_origin(self) -> str:
        """The annotator name and label_source of this import's labels."""
        return f"imported:{self.source_name}"

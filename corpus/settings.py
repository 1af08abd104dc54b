"""Settings: where data lives and how to reach the services, read from FLYWHEEL_* once, on demand."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Process-wide settings; every field can be set as FLYWHEEL_<NAME> or in a `.env` file."""

    model_config = SettingsConfigDict(env_prefix="FLYWHEEL_", env_file=".env", extra="ignore")

    data_root: str = Field("data", description="Local folder or fsspec URL holding all Flywheel data.")
    project_dir: Path = Field(Path("."), description="The checkout; venvs and service state live under it.")
    label_studio_host: str = Field("127.0.0.1", description="Address Label Studio binds and is reached on.")
    label_studio_port: int = Field(8080, description="Label Studio's port.")
    label_studio_url: str | None = Field(None, description="Reach an existing Label Studio here instead.")
    label_studio_token: SecretStr = Field(
        SecretStr("flywheel-demo-token-0001"), description="Label Studio API token (legacy token)."
    )
    label_studio_token_secret: str | None = Field(
        None, description="Name of a Prefect Secret block holding the Label Studio token; wins over the token."
    )
    label_studio_user: str = Field("admin@flywheel.local", description="Label Studio admin login.")
    label_studio_password: SecretStr = Field(SecretStr("flywheel-admin"), description="Label Studio admin password.")
    label_studio_venv: Path = Field(Path(".venv-ls"), description="Virtualenv holding the Label Studio server.")
    site_port: int = Field(8765, description="Port of the demo's sample website on 127.0.0.1.")
    bridge_port: int = Field(
        8790, description="Port on 127.0.0.1 of the webhook bridge that `flywheel ui` and the demo start."
    )
    prefect_port: int = Field(4200, description="Port of the local Prefect server started by `services up`.")
    s3_endpoint_url: str | None = Field(
        None,
        description="Endpoint of an S3-compatible store for an s3:// data root (SeaweedFS, Ceph, moto); "
        "unset means AWS itself, or whatever AWS_ENDPOINT_URL says.",
    )
    s3_access_key_id: str | None = Field(None, description="Access key for the s3:// data root; unset: AWS's chain.")
    s3_secret_access_key: SecretStr | None = Field(
        None, description="Secret key for the s3:// data root; unset: AWS's credential chain."
    )
    release_signing_key: SecretStr | None = Field(
        None,
        description="HMAC key signing release manifests: when set, releases are signed when built and "
        "unsigned or wrongly signed ones are refused when loaded.",
    )
    s3_region: str | None = Field(None, description="Region of the s3:// data root's bucket.")
    dask_address: str | None = Field(
        None,
        description="Scheduler of an existing Dask cluster (tcp://host:8786) that sharded curation runs on; "
        "unset: a LocalCluster of `dask_workers` processes when a flow asks for Dask.",
    )
    dask_workers: int = Field(
        2, ge=1, description="Worker processes of the LocalCluster started when no address is set."
    )
    webhook_url: str | None = Field(
        None,
        description="Where Label Studio sends annotation webhooks (the `flywheel label listen` bridge); each "
        "round's project gets one. Unset: rounds are watched by the scheduled check only.",
    )
    label_check_every_s: int | None = Field(
        None,
        ge=10,
        description="How often the scheduled label-check runs, in seconds, where Flywheel registers the deployments "
        "(`flywheel ui`, `flywheel demo`): an interval in place of deploy/prefect.yaml's every-10-minutes cron, for "
        "rounds watched without webhooks. Unset: the cron.",
    )
    webhook_secret: SecretStr | None = Field(
        None, description="Shared secret Label Studio sends in the X-Flywheel-Webhook header; the bridge checks it."
    )
    work_dir: Path = Field(
        Path(".cache/work"),
        description="Local scratch for what must sit on a disk (crawl job folders, crawler state) when the "
        "data root is object storage.",
    )

    @property
    def label_studio_base_url(self) -> str:
        return self.label_studio_url or f"http://{self.label_studio_host}:{self.label_studio_port}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings, read from the environment the first time they are asked for."""
    return Settings()

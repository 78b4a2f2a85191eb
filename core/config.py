"""Settings: one pydantic-settings class, read once from `TINYRES_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of tinyres. Unset URLs mean the embedded defaults under the data root."""

    model_config = SettingsConfigDict(env_prefix="TINYRES_", extra="ignore")

    data_root: Path = Field(
        default=Path("./data"),
        description="The one folder holding every source dataset, shard set, checkpoint and model.",
    )
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    broker_url: str | None = Field(
        default=None, description="Celery broker; unset: a SQLite file under the data root."
    )
    database_url: str | None = Field(
        default=None, description="Job store; unset: a SQLite file under the data root."
    )
    api_key: str | None = Field(
        default=None, description="When set, mutating requests need the X-API-Key header."
    )
    api_key_reads: bool = Field(
        default=False,
        description="With api_key set, reads (every GET but /healthz, /readyz and the docs) "
        "and POST /predict need the X-API-Key header too.",
    )
    # Redis redelivers an unacknowledged task after this many seconds; it must exceed the
    # longest job, or a long training run would be handed to a second worker.
    visibility_timeout: Annotated[int, Field(ge=60)] = 7 * 24 * 3600
    job_max_attempts: Annotated[int, Field(ge=1, le=100)] = 3
    # A worker renews its lease on a running job this often; a lease not renewed for
    # `lease_seconds` marks the job as orphaned (its worker died).
    lease_seconds: Annotated[int, Field(ge=2)] = 60
    progress_interval: Annotated[float, Field(gt=0)] = 2.0
    reader_cache_bytes: Annotated[int, Field(ge=0)] = 2 * 1024**3
    checkpoints_keep: Annotated[int, Field(ge=1)] = 5
    # Prediction
    max_upload_bytes: Annotated[int, Field(ge=1024)] = 10 * 1024**2
    max_image_pixels: Annotated[int, Field(ge=64 * 64)] = 25_000_000
    model_cache_size: Annotated[int, Field(ge=1)] = 4
    batching: bool = True
    batch_max_size: Annotated[int, Field(ge=1, le=1024)] = 32
    batch_timeout_ms: Annotated[float, Field(ge=0, le=1000)] = 5.0
    predict_queue_size: Annotated[int, Field(ge=1)] = 256
    predict_batch_max_images: Annotated[int, Field(ge=1, le=1024)] = 64
    # TensorFlow op determinism and a reproducible input order: exact, slower.
    deterministic: bool = False
    # Uploaded dataset archives (tus, app/uploads): size of one upload, and what the
    # archive may hold once unpacked (zip bombs); partial uploads expire after this long.
    max_upload_bytes_dataset: Annotated[int, Field(ge=1)] = 20 * 1000**3
    max_archive_bytes: Annotated[int, Field(ge=1)] = 20 * 1000**3
    max_archive_members: Annotated[int, Field(ge=1)] = 1_000_000
    upload_expiry_hours: Annotated[float, Field(gt=0)] = 24.0
    # Training on a GPU: on by default, off on the CPU where they do not help.
    mixed_precision: bool | None = None
    xla: bool | None = None
    # Batches per compiled call of `fit` (no host-device round trip in between); progress,
    # cancel and heartbeats are timer-driven, so they still answer within seconds.
    steps_per_execution: Annotated[int, Field(ge=1, le=1000)] = 1
    # The Keras backend a training worker runs (the API and datasets worker need neither).
    keras_backend: Literal["tensorflow", "jax"] = "tensorflow"
    # Storage (docs/SCALING.md): unset keeps everything under data_root on local disk.
    storage_url: str | None = Field(
        default=None, description="s3://bucket/prefix: the object store every host shares."
    )
    s3_endpoint_url: str | None = None
    cache_dir: Path | None = Field(
        default=None, description="This host's cache of objects read from the store."
    )
    cache_max_bytes: Annotated[int, Field(ge=0)] = 20 * 1024**3
    # How long a store outage is retried (with backoff) before a job fails with the reason.
    storage_retry_seconds: Annotated[float, Field(ge=0)] = 120.0

    @field_validator(
        "broker_url", "database_url", "api_key", "storage_url", "s3_endpoint_url", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def resolved_data_root(self) -> Path:
        return self.data_root.expanduser().resolve()

    @property
    def resolved_cache_dir(self) -> Path:
        """This host's cache of store objects (default: ``cache`` under the data root)."""
        if self.cache_dir is not None:
            return self.cache_dir.expanduser().resolve()
        return self.resolved_data_root / "cache"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.resolved_data_root / 'tinyres.sqlite'}"

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.resolved_data_root / 'broker.sqlite'}"

    @property
    def broker_is_embedded(self) -> bool:
        return self.broker_url is None


def get_settings() -> Settings:
    """Read the settings from the environment now (tests change it between cases)."""
    return Settings()


settings = get_settings()

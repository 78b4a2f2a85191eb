"""Request and response bodies beyond the Job record itself (core.jobs.Job)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.jobs import Job
from core.names import NAME_PATTERN
from model.config import ArchitectureConfig

Name = Field(pattern=NAME_PATTERN, description="letters, digits, _ and -; at most 64")


class ShardRequest(BaseModel):
    """POST /jobs/shard."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        min_length=1,
        max_length=1024,
        description="Path relative to TINYRES_DATA_ROOT: a Tiny ImageNet folder, a "
        "class-per-folder tree, or the .zip of either.",
    )
    dataset: str = Name
    num_shards: int = Field(default=10, ge=1, le=1024)
    compression: Literal["GZIP", "NONE"] = "GZIP"
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    overwrite: bool = Field(
        default=False, description="Replace an existing dataset of the same name (else 409)."
    )


class TrainRequest(BaseModel):
    """POST /jobs/train. Defaults are the write-up's flags (the `seed` preset)."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Name
    width: int = Field(default=64, ge=4, le=512)
    levels: list[int] = Field(default_factory=lambda: [4, 6, 3, 2], min_length=1, max_length=6)
    epochs: int = Field(default=72, ge=1, le=10_000)
    batch_size: int = Field(default=128, ge=1, le=4096)
    learning_rate: float = Field(default=0.01, gt=0, le=10)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    lr_decay_epoch: int = Field(default=64, ge=1, le=10_000)
    lr_decay: float = Field(default=0.1, gt=0, le=1)
    l2: float = Field(default=0.01, ge=0, le=1)
    resume_from: str | None = Field(default=None, pattern=NAME_PATTERN)
    initial_epoch: int | None = Field(default=None, ge=0, le=10_000)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)

    @model_validator(mode="after")
    def _check(self) -> TrainRequest:
        # The architecture is validated by the same schema model/ builds the network from.
        ArchitectureConfig(width=self.width, levels=self.levels)
        if self.initial_epoch is not None and self.resume_from is None:
            raise ValueError("initial_epoch needs resume_from")
        if self.initial_epoch is not None and self.initial_epoch >= self.epochs:
            raise ValueError(
                f"initial_epoch must be below epochs. Received: initial_epoch="
                f"{self.initial_epoch}, epochs={self.epochs}"
            )
        return self


class JobList(BaseModel):
    jobs: list[Job]


class ErrorBody(BaseModel):
    detail: Any

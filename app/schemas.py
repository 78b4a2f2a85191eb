"""Request and response bodies beyond the Job record itself (core.jobs.Job) and the train
job's parameters (core.train_config.TrainConfig)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.jobs import Job
from core.names import NAME_PATTERN

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


class JobList(BaseModel):
    jobs: list[Job]


class ErrorBody(BaseModel):
    detail: Any


class Prediction(BaseModel):
    class_index: int
    wnid: str
    label: str
    probability: float


class PredictAnswer(BaseModel):
    model: str = Field(description="Id of the model that answered (its train job's id).")
    predictions: list[Prediction] = Field(description="Most probable first.")


class ImagePredictions(BaseModel):
    predictions: list[Prediction]


class BatchPredictAnswer(BaseModel):
    model: str
    results: list[ImagePredictions] = Field(description="One per image, in upload order.")


class PredictStats(BaseModel):
    batches: int = Field(description="Forward passes run since start.")
    images: int = Field(description="Images classified since start.")
    max_batch: int = Field(description="Largest forward pass, in images.")
    rejected: int = Field(description="Requests refused with 503 because the queue was full.")
    waiting: int = Field(description="Requests accepted and not yet answered.")
    recent_batch_sizes: list[int] = Field(description="Sizes of the latest forward passes.")
    cached_models: list[str] = Field(description="Loaded model ids, least recently used first.")

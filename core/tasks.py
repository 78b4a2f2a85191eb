"""Celery task and queue names: the contract between the API, which publishes by name,
and the worker, which registers the tasks (``worker/tasks.py``)."""

from __future__ import annotations

from typing import Final

DATASETS_QUEUE: Final = "datasets"
TRAINING_QUEUE: Final = "training"

SHARD_TASK: Final = "tinyres.shard"
SHARD_PART_TASK: Final = "tinyres.shard_part"
TRAIN_TASK: Final = "tinyres.train"

# The task that runs a job of each kind.
JOB_TASKS: Final = {"shard": SHARD_TASK, "train": TRAIN_TASK}

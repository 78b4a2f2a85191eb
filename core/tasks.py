"""Celery task and queue names: the contract between the API, which publishes by name,
and the worker, which registers the tasks (``worker/tasks.py``)."""

from __future__ import annotations

from typing import Final

DATASETS_QUEUE: Final = "datasets"
TRAINING_QUEUE: Final = "training"

SHARD_TASK: Final = "tinyres.shard"
SHARD_PART_TASK: Final = "tinyres.shard_part"
TRAIN_TASK: Final = "tinyres.train"
EVALUATE_TASK: Final = "tinyres.evaluate"
EXPORT_TASK: Final = "tinyres.export"
PREDICT_TASK: Final = "tinyres.predict"

# The task that runs a job of each kind.
JOB_TASKS: Final = {
    "shard": SHARD_TASK,
    "train": TRAIN_TASK,
    "evaluate": EVALUATE_TASK,
    "export": EXPORT_TASK,
    "predict": PREDICT_TASK,
}

# Where each task is sent: TensorFlow jobs that run a network go to the training workers
# (the GPU hosts); sharding and batch prediction stream files on the datasets workers.
TASK_QUEUES: Final = {
    SHARD_TASK: DATASETS_QUEUE,
    SHARD_PART_TASK: DATASETS_QUEUE,
    TRAIN_TASK: TRAINING_QUEUE,
    EVALUATE_TASK: TRAINING_QUEUE,
    EXPORT_TASK: TRAINING_QUEUE,
    PREDICT_TASK: DATASETS_QUEUE,
}

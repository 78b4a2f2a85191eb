"""Training under MirroredStrategy, on the CPU split into two logical devices.

It runs in a fresh interpreter: logical devices must be configured before TensorFlow
initialises, which in the test process has long happened.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.utils.datasets import make_digits_tiny_imagenet
from tests.worker.fresh_process import run_script
from worker import sharding

pytestmark = [pytest.mark.slow, pytest.mark.heavy]

SCRIPT = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from core.config import Settings
from core.jobs import JobStore
from worker.runner import run_job
from worker.training import train
settings = Settings()
store = JobStore(settings.effective_database_url)
store.create_schema()
params = json.loads(sys.argv[1])
job = run_job(store, settings, store.create("train", params).id, train)
print("RESULT", job.model_dump_json())
"""


def test_training_mirrors_over_two_devices(data_root: Path) -> None:
    source = make_digits_tiny_imagenet(
        data_root / "src", classes=3, train_per_class=8, val_per_class=2
    )
    sharding.shard_dataset(source, data_root / "datasets" / "d", num_shards=2)
    params = {
        "dataset": "d",
        "width": 8,
        "levels": [1, 1],
        "epochs": 2,
        "batch_size": 8,
        "learning_rate": 0.01,
        "momentum": 0.9,
        "lr_decay_epoch": 64,
        "lr_decay": 0.1,
        "l2": 0.01,
        "seed": 0,
    }
    job = json.loads(run_script(SCRIPT, data_root, json.dumps(params)))
    assert job["state"] == "succeeded", job["error"]
    assert job["result"]["replicas"] == 2  # the global batch of 8 split over two replicas
    assert [entry["epoch"] for entry in job["history"]] == [1, 2]

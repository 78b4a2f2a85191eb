"""Training as a job, in this process: real TensorFlow, real shards, a real job store."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from core import layout
from core.config import Settings
from core.jobs import Job, JobState, JobStore
from core.train_config import TrainConfig
from model.config import INPUT_SHAPE
from tests.utils.datasets import make_digits_tiny_imagenet
from worker import sharding
from worker.runner import run_job
from worker.training import train

TINY: dict[str, Any] = {"width": 8, "levels": [1, 1]}


def train_params(dataset: str, **overrides: Any) -> dict[str, Any]:
    """A tiny network's parameters, stored in the job as the API stores them."""
    fields = {**TINY, "epochs": 2, "batch_size": 32, "learning_rate": 0.05, "l2": 0.0001}
    return TrainConfig.model_validate({"dataset": dataset, **fields, **overrides}).model_dump()


@pytest.fixture(scope="module")
def digits_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding a sharded 10-class digits dataset (real images)."""
    root = tmp_path_factory.mktemp("training") / "data"
    source = make_digits_tiny_imagenet(
        root / "src", classes=10, train_per_class=40, val_per_class=10, seed=1
    )
    sharding.shard_dataset(source, root / "datasets" / "digits", num_shards=4, seed=0)
    return root


@pytest.fixture
def train_settings(digits_root: Path) -> Settings:
    return Settings(data_root=digits_root, lease_seconds=30, progress_interval=0.2)


@pytest.fixture
def job_store(train_settings: Settings) -> JobStore:
    store = JobStore(train_settings.effective_database_url)
    store.create_schema()
    return store


def run_train(store: JobStore, settings: Settings, params: dict[str, Any]) -> Job:
    job = store.create("train", params)
    finished = run_job(store, settings, job.id, train)
    assert finished is not None
    return finished


def test_the_network_learns_digits(job_store: JobStore, train_settings: Settings) -> None:
    # The write-up's staircase, compressed: x0.1 after 12 of 16 epochs.
    params = train_params("digits", epochs=16, batch_size=16, lr_decay_epoch=12)
    job = run_train(job_store, train_settings, params)
    assert job.state == JobState.SUCCEEDED, job.error
    assert [entry["epoch"] for entry in job.history] == list(range(1, 17))
    rates = [entry["learning_rate"] for entry in job.history]
    assert rates == pytest.approx([0.05] * 12 + [0.005] * 4)
    first, last = job.history[0], job.history[-1]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds"} <= set(last)
    # The write-up's sanity check: untrained, about 1/classes.
    assert job.metrics["initial_accuracy"] < 0.3
    assert last["loss"] < first["loss"]
    # Far above chance (0.1) on held-out images the network never saw (0.7 to 0.8 in
    # repeated runs here; training is not bit-deterministic, so the bar leaves room).
    assert last["val_accuracy"] >= 0.5, job.history

    # The model for serving: the .keras file with its class list; exports are jobs of
    # their own, so training writes none.
    model = keras.saving.load_model(layout.model_path(train_settings, job.id))
    assert [c["label"] for c in model.class_names][:2] == ["digit zero", "digit one"]
    assert not layout.export_dir(train_settings, job.id).exists()
    assert job.result is not None and job.result["model"] == job.id
    assert "saved_model_path" not in job.result
    # The final model's evaluation on the val split comes with the result.
    assert job.result["evaluation"]["model"] == job.id
    assert json.loads(layout.classes_path(train_settings, job.id).read_text())[0]["index"] == 0
    # Checkpoints: newest five (and the best) kept, TensorBoard events written.
    kept = layout.checkpoint_epochs(train_settings, job.id)
    assert kept[-5:] == [12, 13, 14, 15, 16] and len(kept) <= 6
    events = list((layout.job_dir(train_settings, job.id) / "tensorboard").rglob("events.out.*"))
    assert events

    # What the model file predicts equals the trained network (its last checkpoint) on
    # the same pixels.
    images = np.random.default_rng(0).integers(0, 256, (4, *INPUT_SHAPE), dtype=np.uint8)
    checkpoint = keras.saving.load_model(
        layout.checkpoints_dir(train_settings, job.id) / layout.checkpoint_name(16)
    )
    network = np.asarray(checkpoint(images, training=False))
    assert network.shape == (4, 10)
    np.testing.assert_allclose(np.asarray(model(images, training=False)), network, atol=1e-5)


def test_progress_moves_within_an_epoch_and_cancel_stops_it(
    job_store: JobStore, train_settings: Settings
) -> None:
    params = train_params("digits", epochs=50, batch_size=4)
    job = job_store.create("train", params)
    outcome: list[Job | None] = []
    runner = threading.Thread(
        target=lambda: outcome.append(run_job(job_store, train_settings, job.id, train))
    )
    runner.start()
    seen: set[tuple[int, int]] = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        progress = job_store.get(job.id).progress
        if progress.get("epoch") and progress.get("step"):
            seen.add((progress["epoch"], progress["step"]))
        if job_store.shard_progress(job.id) == [] and len({s for e, s in seen if e == 2}) >= 3:
            break
        time.sleep(0.05)
    # Several different steps of one epoch were visible while it ran.
    assert len({step for epoch, step in seen if epoch == 2}) >= 3, seen
    snapshot = job_store.get(job.id)
    assert snapshot.progress["epochs"] == 50 and snapshot.progress["steps"] == 100
    assert 0 < snapshot.progress["fraction"] < 0.1
    assert snapshot.progress["eta_seconds"] is not None and snapshot.progress["eta_seconds"] > 0
    # The ETA comes from measured steps (after warm-up): the steps left at the measured speed,
    # plus validation.
    speed = snapshot.progress["images_per_second"]
    assert speed > 0
    progress = snapshot.progress
    left = progress["epochs"] * progress["steps"] - (
        (progress["epoch"] - 1) * progress["steps"] + progress["step"]
    )
    assert progress["eta_seconds"] >= 0.95 * left * 4 / speed
    assert "loss" in snapshot.metrics

    asked = time.monotonic()
    job_store.request_cancel(job.id)
    runner.join(timeout=60)
    assert not runner.is_alive()
    assert time.monotonic() - asked < 15
    final = job_store.get(job.id)
    assert final.state == JobState.CANCELLED and final.error is None
    # Checkpoints of the finished epochs are kept: the job can be resumed later.
    assert layout.checkpoint_epochs(train_settings, job.id)[-1] == len(final.history) >= 1


def test_a_diverging_run_fails_the_job_with_a_readable_error(
    job_store: JobStore, train_settings: Settings
) -> None:
    # The largest learning rate and L2 the schema allows: each SGD step multiplies the
    # dense kernel by about 1 - 2 * lr * l2 = -19, so within a few dozen steps its
    # penalty overflows and the loss is no longer a number.
    params = train_params("digits", epochs=3, batch_size=16, learning_rate=10, l2=1)
    job = run_train(job_store, train_settings, params)
    assert job.state == JobState.FAILED
    assert job.error is not None
    assert re.fullmatch(r"the loss became (nan|inf|-inf) in epoch \d+", job.error), job.error
    # The epochs before the one that diverged are kept, and the job's history says so.
    epoch = int(job.error.rsplit(" ", 1)[1])
    assert [entry["epoch"] for entry in job.history] == list(range(1, epoch))


@pytest.fixture
def float32_after() -> Any:
    yield
    keras.mixed_precision.set_global_policy("float32")  # other tests build float32 models


@pytest.mark.heavy
@pytest.mark.parametrize(
    ("speedup", "policy"), [({"xla": True}, "float32"), ({"mixed_precision": True}, "bfloat16")]
)
def test_a_job_trains_with_xla_and_with_bfloat16(
    job_store: JobStore,
    digits_root: Path,
    speedup: dict[str, bool],
    policy: str,
    float32_after: None,
) -> None:
    settings = Settings(data_root=digits_root, lease_seconds=30, progress_interval=0.2, **speedup)
    job = run_train(job_store, settings, train_params("digits", epochs=2, batch_size=32))
    assert job.state == JobState.SUCCEEDED, job.error
    assert [entry["epoch"] for entry in job.history] == [1, 2]
    assert all(np.isfinite(entry["loss"]) for entry in job.history)
    keras.mixed_precision.set_global_policy("float32")
    model = keras.saving.load_model(layout.model_path(settings, job.id))
    images = np.random.default_rng(1).integers(0, 256, (2, *INPUT_SHAPE), dtype=np.uint8)
    assert np.isfinite(np.asarray(model(images, training=False), dtype=np.float32)).all()
    # Trained in that precision: the saved network's convolutions computed in it.
    assert model.get_layer("tail").dtype_policy.compute_dtype == policy


def test_no_callback_reads_a_batch_on_the_training_thread(
    job_store: JobStore, train_settings: Settings
) -> None:
    # Keras dispatches per-batch hooks to a thread pool on a thread-safe backend (JAX)
    # unless a callback overrides one: then every step waits for its loss. The job's
    # callbacks, TensorBoard included, override none. (On TensorFlow Keras reads each
    # call's logs itself: steps_per_execution amortizes that, see worker.devices.)
    from keras.src.backend import IS_THREAD_SAFE
    from keras.src.utils import is_default

    from worker.runner import JobContext
    from worker.train_callbacks import JobProgress
    from worker.training import callbacks_of

    job = job_store.create("train", train_params("digits"))
    ctx = JobContext(job_store, job, train_settings, owner="test")
    config = TrainConfig.model_validate(job.params)
    callbacks = callbacks_of(ctx, config, JobProgress(ctx, config, 10, []))
    for callback in callbacks:
        for hook in ("on_batch_end", "on_train_batch_end", "on_test_batch_end"):
            assert is_default(getattr(callback, hook)), (callback, hook)
    dispatch = keras.callbacks.CallbackList(callbacks, model=keras.Sequential())
    assert dispatch._async_train == dispatch._async_test == IS_THREAD_SAFE
    board = callbacks[-1]
    assert isinstance(board, keras.callbacks.TensorBoard) and board.update_freq == "epoch"

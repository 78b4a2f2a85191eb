"""Exports from a real trained model, each checked in its own runtime on real images."""

from __future__ import annotations

import threading
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core import layout
from core.config import Settings
from core.jobs import Job, JobState, JobStore
from core.train_config import TrainConfig
from model.serving import LoadedModel, load_model
from tests.app.conftest import build_model_file
from tests.utils.datasets import make_digits_tiny_imagenet
from tests.utils.services import wait_for
from worker import sharding
from worker.export_job import run_export
from worker.exports.artifacts import build_artifact
from worker.exports.checks import (
    ExportCheckFailed,
    measure_agreement,
    open_in_runtime,
    require_agreement,
    val_images,
)
from worker.exports.formats import ARTIFACT_FILES, FORMATS, list_exports, read_export
from worker.runner import run_job
from worker.training import train

pytestmark = pytest.mark.slow

CLASSES = 4


@pytest.fixture(scope="module")
def export_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with a sharded 4-class digits dataset (real images, 48 val images)."""
    root = tmp_path_factory.mktemp("exports") / "data"
    source = make_digits_tiny_imagenet(
        root / "src", classes=CLASSES, train_per_class=32, val_per_class=12, seed=3
    )
    sharding.shard_dataset(source, root / "datasets" / "digits", num_shards=2, seed=0)
    return root


@pytest.fixture(scope="module")
def export_settings(export_root: Path) -> Settings:
    return Settings(data_root=export_root, lease_seconds=2, progress_interval=0.2)


@pytest.fixture(scope="module")
def job_store(export_settings: Settings) -> JobStore:
    store = JobStore(export_settings.effective_database_url)
    store.create_schema()
    return store


@pytest.fixture(scope="module")
def trained(job_store: JobStore, export_settings: Settings) -> str:
    """The id of a tiny network trained for a few epochs on the digits."""
    config = {"width": 8, "levels": [1, 1], "epochs": 3, "batch_size": 16, "learning_rate": 0.05}
    params = TrainConfig.model_validate({"dataset": "digits", **config}).model_dump()
    job = run_job(job_store, export_settings, job_store.create("train", params).id, train)
    assert job is not None and job.state == JobState.SUCCEEDED, job and job.error
    return job.id


@pytest.fixture(scope="module")
def served(trained: str, export_settings: Settings) -> LoadedModel:
    return load_model(trained, layout.model_path(export_settings, trained))


def _export(store: JobStore, settings: Settings, model: str, fmt: str) -> Job:
    job = store.create("export", {"model": model, "format": fmt})
    finished = run_job(store, settings, job.id, run_export)
    assert finished is not None
    return finished


def _val_pixels(settings: Settings) -> np.ndarray:
    val = val_images(layout.dataset_dir(settings, "digits"), batch_size=64)
    return np.concatenate(list(val.batches()))


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_is_exported_checked_and_offered(
    fmt: str,
    job_store: JobStore,
    export_settings: Settings,
    trained: str,
    served: LoadedModel,
    tmp_path: Path,
) -> None:
    job = _export(job_store, export_settings, trained, fmt)
    assert job.state == JobState.SUCCEEDED, job.error
    root = layout.exports_root(export_settings, trained)
    info = read_export(root, fmt)
    assert info is not None and info.images == CLASSES * 12
    assert info.agreement >= 0.99 and job.result is not None
    assert job.result["agreement"] == info.agreement and job.result["bytes"] == info.bytes
    assert job.progress["fraction"] == 1.0
    assert not [p for p in root.iterdir() if p.name.startswith(".tmp-")]  # no scratch left
    # The offered file, run by its own runtime, answers what /predict answers.
    artifact = root / ARTIFACT_FILES[fmt]
    assert artifact.stat().st_size == info.bytes
    if fmt == "saved_model":
        assert zipfile.ZipFile(artifact).testzip() is None
    predict = open_in_runtime(fmt, artifact, tmp_path / "runtime")
    pixels = _val_pixels(export_settings)
    assert pixels.dtype == np.uint8 and pixels.shape == (CLASSES * 12, 64, 64, 3)
    probabilities = predict(pixels)
    assert probabilities.shape == (len(pixels), CLASSES)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-4)
    np.testing.assert_allclose(probabilities, served.probabilities(pixels), atol=1e-4)
    assert fmt in [entry.format for entry in list_exports(root)]


def test_an_artifact_of_another_model_fails_the_check(
    export_settings: Settings, served: LoadedModel, tmp_path: Path
) -> None:
    other = load_model("other", build_model_file(tmp_path / "other.keras", CLASSES, seed=5))
    artifact = tmp_path / "artifact" / "model.onnx"
    artifact.parent.mkdir()
    build_artifact("onnx", other, artifact)
    predict = open_in_runtime("onnx", artifact, tmp_path / "runtime")
    val = val_images(layout.dataset_dir(export_settings, "digits"))
    pixels = _val_pixels(export_settings)
    expected = np.mean(
        np.argmax(other.probabilities(pixels), -1) == np.argmax(served.probabilities(pixels), -1)
    )
    assert expected < 0.99  # the two models really disagree, so the check has work to do
    agreement = measure_agreement(predict, served.probabilities, val.batches())
    assert agreement.images == len(pixels)
    assert agreement.fraction == pytest.approx(expected)
    with pytest.raises(ExportCheckFailed, match=r"agreement 0\.\d+, at least 0\.99 needed"):
        require_agreement("onnx", agreement)


def test_an_artifact_of_another_shape_fails_the_check(
    export_settings: Settings, served: LoadedModel, tmp_path: Path
) -> None:
    other = load_model("five", build_model_file(tmp_path / "five.keras", 5, seed=6))
    artifact = tmp_path / "artifact" / "model.onnx"
    artifact.parent.mkdir()
    build_artifact("onnx", other, artifact)
    predict = open_in_runtime("onnx", artifact, tmp_path / "runtime")
    val = val_images(layout.dataset_dir(export_settings, "digits"))
    with pytest.raises(ExportCheckFailed, match=r"answers shape \[\d+, 5\] where the served"):
        measure_agreement(predict, served.probabilities, val.batches())


def test_a_file_that_is_no_artifact_is_refused_readably(tmp_path: Path) -> None:
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"not an onnx graph")
    with pytest.raises(ExportCheckFailed, match="cannot be loaded by its runtime"):
        open_in_runtime("onnx", bogus, tmp_path / "runtime")


def test_a_cancelled_export_leaves_nothing_offered(
    job_store: JobStore, export_settings: Settings, trained: str
) -> None:
    root = layout.exports_root(export_settings, trained)
    before = {p.name for p in root.iterdir()} if root.is_dir() else set()
    job = job_store.create("export", {"model": trained, "format": "litert"})
    outcome: dict[str, Any] = {}
    runner = threading.Thread(
        target=lambda: outcome.update(job=run_job(job_store, export_settings, job.id, run_export))
    )
    runner.start()
    wait_for(lambda: job_store.get(job.id).state == JobState.RUNNING, timeout=30, interval=0.05)
    job_store.request_cancel(job.id)
    runner.join(timeout=120)
    assert outcome["job"].state == JobState.CANCELLED
    after = {p.name for p in root.iterdir()} if root.is_dir() else set()
    assert after <= before  # no scratch folder, no new artifact or metadata


def test_an_export_whose_dataset_is_gone_fails_readably(
    job_store: JobStore, export_settings: Settings, trained: str, tmp_path: Path
) -> None:
    model = job_store.create("train", {**job_store.get(trained).params, "dataset": "gone"})
    path = layout.model_path(export_settings, model.id)
    path.parent.mkdir(parents=True)
    path.write_bytes(layout.model_path(export_settings, trained).read_bytes())
    job_store.finish(model.id, JobState.SUCCEEDED, result={"model": model.id})
    job = _export(job_store, export_settings, model.id, "onnx")
    assert job.state == JobState.FAILED
    assert job.error is not None and "dataset 'gone'" in job.error
    assert not layout.exports_root(export_settings, model.id).exists()


def test_a_mixed_precision_model_file_is_exported_in_float32(
    export_settings: Settings, tmp_path: Path
) -> None:
    import keras

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        path = build_model_file(tmp_path / "bf16.keras", CLASSES, seed=7)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert '"mixed_bfloat16"' in zipfile.ZipFile(path).read("config.json").decode()
    served = load_model("bf16", path)
    artifact = tmp_path / "artifact" / "model.onnx"
    artifact.parent.mkdir()
    build_artifact("onnx", served, artifact)  # onnxruntime has no bfloat16 convolutions
    predict = open_in_runtime("onnx", artifact, tmp_path / "runtime")
    pixels = _val_pixels(export_settings)
    np.testing.assert_allclose(predict(pixels), served.probabilities(pixels), atol=1e-4)

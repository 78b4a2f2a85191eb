"""Export routes through the real app, and one export job run end to end by a real worker."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from core import layout
from core.config import Settings
from core.jobs import JobState, JobStore
from tests.app.conftest import TINY
from tests.utils.datasets import make_digits_tiny_imagenet
from tests.utils.services import service_env, wait_for, worker_process
from worker import sharding

CLASSES = 3


def _register(settings: Settings, source: Path, dataset: str) -> str:
    """Files `source` as the model of a succeeded train job on `dataset`."""
    store = JobStore(settings.effective_database_url)
    try:
        store.create_schema()
        job = store.create("train", {"dataset": dataset, **TINY, "epochs": 1})
        path = layout.model_path(settings, job.id)
        path.parent.mkdir(parents=True)
        shutil.copyfile(source, path)
        store.finish(job.id, JobState.SUCCEEDED, result={"model": job.id})
    finally:
        store.engine.dispose()
    return job.id


@pytest.fixture
def export_settings(data_root: Path) -> Settings:
    source = make_digits_tiny_imagenet(
        data_root / "src", classes=CLASSES, train_per_class=8, val_per_class=6, seed=4
    )
    sharding.shard_dataset(source, data_root / "datasets" / "digits", num_shards=2, seed=0)
    return Settings(data_root=data_root, lease_seconds=3)


@pytest.fixture
def api(export_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(export_settings)) as client:
        yield client


def test_bad_requests_are_refused_with_a_reason(
    api: TestClient, export_settings: Settings, model_file: Path
) -> None:
    model = _register(export_settings, model_file, "digits")
    orphan = _register(export_settings, model_file, "deleted-dataset")
    for unknown in ("nosuchmodel", "no.such", "x" * 200):
        answer = api.post(f"/models/{unknown}/exports", json={"format": "onnx"})
        assert answer.status_code == 404, answer.text
        assert api.get(f"/models/{unknown}/exports").status_code == 404
        assert api.get(f"/models/{unknown}/exports/onnx").status_code == 404
    bad = api.post(f"/models/{model}/exports", json={"format": "pdf"})
    assert bad.status_code == 422
    assert "'saved_model', 'onnx' or 'litert'" in bad.text
    assert api.post(f"/models/{model}/exports", json={}).status_code == 422
    assert api.get(f"/models/{model}/exports/pdf").status_code == 422
    gone = api.post(f"/models/{orphan}/exports", json={"format": "onnx"})
    assert gone.status_code == 422 and "deleted-dataset" in gone.json()["detail"]
    assert api.get(f"/models/{model}/exports").json() == {"exports": []}
    missing = api.get(f"/models/{model}/exports/litert")
    assert missing.status_code == 404 and "no litert export" in missing.json()["detail"]
    assert api.get("/jobs", params={"kind": "export"}).json()["jobs"] == []  # none accepted


@pytest.mark.slow
@pytest.mark.heavy
def test_an_onnx_export_runs_on_a_worker_and_is_downloaded(
    api: TestClient, export_settings: Settings, model_file: Path, tmp_path: Path
) -> None:
    import onnxruntime

    from model.serving import load_model
    from worker.exports.checks import val_images

    model = _register(export_settings, model_file, "digits")
    assert api.put("/aliases/prod", json={"model": model}).status_code == 200
    env = service_env(export_settings.resolved_data_root, TINYRES_LEASE_SECONDS="3")
    log = tmp_path / "worker.log"
    with worker_process(env, log=log):
        answer = api.post("/models/prod/exports", json={"format": "onnx"})  # an alias works
        assert answer.status_code == 202, answer.text
        job = answer.json()
        assert job["kind"] == "export" and job["params"] == {"model": model, "format": "onnx"}
        assert answer.headers["Location"] == f"/jobs/{job['id']}"

        def finished() -> dict[str, Any] | None:
            current = api.get(f"/jobs/{job['id']}").json()
            return current if current["state"] in ("succeeded", "failed", "cancelled") else None

        done = wait_for(finished, timeout=240)
        assert isinstance(done, dict)
        assert done["state"] == "succeeded", (done, log.read_text()[-4000:])
    listed = api.get(f"/models/{model}/exports").json()["exports"]
    assert [entry["format"] for entry in listed] == ["onnx"]
    entry = listed[0]
    assert entry["agreement"] >= 0.99 and entry["images"] == CLASSES * 6
    assert {"format", "bytes", "agreement", "created_at"} <= set(entry)
    download = api.get("/models/prod/exports/onnx")
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/octet-stream"
    assert f'filename="{model}.onnx"' in download.headers["content-disposition"]
    assert len(download.content) == entry["bytes"]
    # What was downloaded runs in onnxruntime and answers what the served model answers.
    session = onnxruntime.InferenceSession(download.content, providers=["CPUExecutionProvider"])
    val = val_images(layout.dataset_dir(export_settings, "digits"))
    pixels = np.concatenate(list(val.batches()))
    (probabilities,) = session.run(None, {"images": pixels})
    served = load_model(model, layout.model_path(export_settings, model))
    np.testing.assert_allclose(probabilities, served.probabilities(pixels), atol=1e-4)
    assert api.get(f"/models/{model}/exports/saved_model").status_code == 404

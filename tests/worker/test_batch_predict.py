"""Evaluate and predict jobs end to end (the API, a real worker process), and a batch
prediction cancelled in process."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from core import layout
from core.config import Settings
from core.jobs import JobStore
from core.manifest import load_manifest
from model.serving import decode_upload, load_model, top_k
from tests.utils.datasets import make_digits_tiny_imagenet
from tests.utils.models import build_model_file, register_model, train_model_file
from tests.utils.services import service_env, wait_for, worker_process
from worker import sharding
from worker.batch_predict import CSV_HEADER, run_batch_prediction
from worker.runner import JobCancelled, JobContext

pytestmark = [pytest.mark.slow, pytest.mark.heavy]


@pytest.fixture
def root(data_root: Path) -> Path:
    source = make_digits_tiny_imagenet(
        data_root / "sources" / "digits", classes=3, train_per_class=12, val_per_class=4,
        seed=4, test_images=7,
    )  # fmt: skip
    sharding.shard_dataset(source, data_root / "datasets" / "digits", num_shards=2, seed=0)
    images = source / "test" / "images"
    (images / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (images / "readme.txt").write_text("not an image")
    with zipfile.ZipFile(data_root / "sources" / "test.zip", "w") as archive:
        for path in sorted(images.iterdir()):
            archive.write(path, f"test/{path.name}")
    return data_root


def _model(root: Path, settings: Settings) -> str:
    path = train_model_file(root / "m.keras", root / "datasets" / "digits", epochs=2)
    classes = list(load_manifest(root / "datasets" / "digits").classes)
    return register_model(settings, path, "digits", classes)


def _finished(client: TestClient, job_id: str, log: Path) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = client.get(f"/jobs/{job_id}").json()
        return job if job["state"] in ("succeeded", "failed", "cancelled") else None

    job = wait_for(done, timeout=240)
    assert isinstance(job, dict)
    assert job["state"] == "succeeded", (job, log.read_text()[-4000:])
    return job


def _rows(text: str) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text))
    assert tuple(reader.fieldnames or ()) == CSV_HEADER
    return list(reader)


def test_evaluate_and_predict_jobs_on_a_worker(root: Path, tmp_path: Path) -> None:
    settings = Settings(data_root=root, lease_seconds=3)
    model_id = _model(root, settings)
    log = tmp_path / "worker.log"
    env = service_env(root, TINYRES_LEASE_SECONDS="3", TINYRES_PROGRESS_INTERVAL="0.2")
    with (
        TestClient(create_app(settings)) as client,
        worker_process(env, "training,datasets", log=log),
    ):
        evaluate = client.post("/jobs/evaluate", json={"model": model_id}).json()
        folder = client.post(
            "/jobs/predict", json={"source": "sources/digits/test/images", "top_k": 2}
        ).json()
        archive = client.post(
            "/jobs/predict", json={"source": "sources/test.zip", "model": model_id}
        ).json()
        evaluated = _finished(client, evaluate["id"], log)
        by_folder = _finished(client, folder["id"], log)
        by_zip = _finished(client, archive["id"], log)

        # The evaluate job: an Evaluation, and the model's own (its dataset, val split).
        result = evaluated["result"]
        assert result["model"] == model_id and result["count"] == 12
        assert evaluated["progress"]["fraction"] == 1.0
        assert client.get(f"/models/{model_id}/evaluation").json() == result
        assert client.get(f"/models/{model_id}/confusion.png").content.startswith(b"\x89PNG")

        # The predict jobs: 7 images classified, the broken one listed, the text ignored.
        for job, k in ((by_folder, 2), (by_zip, 3)):
            summary = job["result"]
            assert (summary["images"], summary["top_k"], summary["ignored"]) == (7, k, 1)
            assert summary["unreadable_count"] == 1
            assert summary["unreadable"][0]["file"].endswith("broken.jpg")
            assert job["progress"]["fraction"] == 1.0
        answer = client.get(f"/jobs/{by_folder['id']}/predictions.csv")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/csv")
        rows = _rows(answer.text)
        zipped = _rows(client.get(f"/jobs/{by_zip['id']}/predictions.csv").text)

    assert len(rows) == 7 * 2 and len(zipped) == 7 * 3
    assert {r["file"] for r in zipped} == {f"test/{r['file']}" for r in rows}
    # Each image's rows are /predict's answer: the same classes and probabilities, in order.
    model = load_model(model_id, layout.model_path(settings, model_id))
    images = root / "sources" / "digits" / "test" / "images"
    for name in sorted({r["file"] for r in rows}):
        pixels = decode_upload((images / name).read_bytes(), settings.max_image_pixels)
        expected = top_k(model.probabilities(pixels[np.newaxis])[0], 2, model.class_names)
        mine = [r for r in rows if r["file"] == name]
        assert [r["rank"] for r in mine] == ["1", "2"]
        assert [r["wnid"] for r in mine] == [entry.wnid for entry, _ in expected]
        assert [r["label"] for r in mine] == [entry.label for entry, _ in expected]
        for row, (entry, p) in zip(mine, expected, strict=True):
            assert int(row["class_index"]) == entry.index
            assert float(row["probability"]) == pytest.approx(p, abs=1e-6)


def test_a_cancelled_batch_prediction_leaves_no_csv(root: Path) -> None:
    settings = Settings(data_root=root, lease_seconds=3)
    classes = list(load_manifest(root / "datasets" / "digits").classes)
    model_id = register_model(
        settings, build_model_file(root / "random.keras", classes), "digits", classes
    )
    store = JobStore(settings.effective_database_url)
    job = store.create(
        "predict", {"model": model_id, "source": "sources/digits/test/images", "top_k": 1}
    )
    ctx = JobContext(store, job, settings, owner="test")
    ctx.cancel_requested.set()
    with pytest.raises(JobCancelled):
        run_batch_prediction(ctx)
    assert not layout.predictions_path(settings, job.id).exists()
    assert not list(layout.job_dir(settings, job.id).glob("*predictions*"))
    store.engine.dispose()

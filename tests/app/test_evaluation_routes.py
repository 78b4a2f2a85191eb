"""Evaluation and batch prediction over HTTP, in process (the real app, job store and
embedded broker; no worker): top-1 agrees with /predict, and bad input gets a 4xx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from core import layout
from core.config import Settings
from core.manifest import load_manifest
from model.serving import load_model
from tests.utils.datasets import make_class_folders, make_digits_tiny_imagenet
from tests.utils.models import register_model, train_model_file
from worker import sharding
from worker.evaluation import evaluate
from worker.evaluation_job import write_model_evaluation

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Datasets "digits" (Tiny ImageNet layout, JPEGs) and "folders" (class folders with
    PNG and grayscale images, no val split), each with a trained model."""
    root = tmp_path_factory.mktemp("data")
    digits = make_digits_tiny_imagenet(
        root / "sources" / "digits", classes=4, train_per_class=16, val_per_class=6, seed=5
    )
    folders = make_class_folders(root / "sources" / "folders", per_class=16, seed=1)
    for source, name in ((digits, "digits"), (folders, "folders")):
        sharding.shard_dataset(source, root / "datasets" / name, num_shards=2, seed=0)
        train_model_file(root / f"{name}.keras", root / "datasets" / name, epochs=3)
    (root / "notes.txt").write_text("not a source")
    return root


@pytest.fixture(scope="module")
def settings(root: Path) -> Settings:
    return Settings(data_root=root, lease_seconds=3)


@pytest.fixture(scope="module")
def models(root: Path, settings: Settings) -> dict[str, str]:
    """Model ids by dataset; "folders" is the newest."""
    return {
        name: register_model(
            settings,
            root / f"{name}.keras",
            name,
            list(load_manifest(root / "datasets" / name).classes),
        )
        for name in ("digits", "folders")
    }


@pytest.fixture
def client(settings: Settings, models: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _predict_hits(client: TestClient, model: str, files: list[tuple[Path, str]]) -> int:
    """How many of (file, true wnid) /predict ranks right."""
    hits = 0
    for path, wnid in files:
        answer = client.post(
            "/predict", files={"image": (path.name, path.read_bytes())}, data={"model": model}
        )
        assert answer.status_code == 200, answer.text
        hits += answer.json()["predictions"][0]["wnid"] == wnid
    return hits


def test_top1_is_what_predict_answers(
    client: TestClient, root: Path, settings: Settings, models: dict[str, str]
) -> None:
    source = root / "sources" / "digits"
    val = [
        (source / "val" / "images" / line.split("\t")[0], line.split("\t")[1])
        for line in (source / "val" / "val_annotations.txt").read_text().splitlines()
    ]
    model = load_model(models["digits"], layout.model_path(settings, models["digits"]))
    evaluation = evaluate(model, layout.dataset_dir(settings, "digits"), "val")
    assert evaluation.count == len(val)
    assert evaluation.top1 * len(val) == pytest.approx(_predict_hits(client, models["digits"], val))

    # PNG and grayscale files, a hold-out val split: its two splits together are every file.
    folders = root / "sources" / "folders"
    every = [(p, p.parent.name) for p in sorted(folders.glob("*/*")) if p.suffix != ".txt"]
    model = load_model(models["folders"], layout.model_path(settings, models["folders"]))
    dataset = layout.dataset_dir(settings, "folders")
    held, rest = evaluate(model, dataset, "val"), evaluate(model, dataset, "train")
    assert held.count + rest.count == len(every)
    hits = held.top1 * held.count + rest.top1 * rest.count
    assert hits == pytest.approx(_predict_hits(client, models["folders"], every))


def test_a_models_evaluation_and_chart(
    client: TestClient, settings: Settings, models: dict[str, str]
) -> None:
    model_id = models["digits"]
    for path in (f"/models/{model_id}/evaluation", f"/models/{model_id}/confusion.png"):
        answer = client.get(path)
        assert answer.status_code == 404 and "no evaluation yet" in answer.json()["detail"]
    for path in (
        "/models/nope/evaluation",
        "/models/nope/confusion.png",
        "/models/a%20b/evaluation",
    ):
        assert client.get(path).status_code == 404
    model = load_model(model_id, layout.model_path(settings, model_id))
    evaluation = evaluate(model, layout.dataset_dir(settings, "digits"), "val")
    write_model_evaluation(settings, evaluation)
    answer = client.get(f"/models/{model_id}/evaluation")
    assert answer.status_code == 200
    assert answer.json() == evaluation.model_dump()
    chart = client.get(f"/models/{model_id}/confusion.png")
    assert chart.status_code == 200 and chart.headers["content-type"] == "image/png"
    assert chart.content.startswith(b"\x89PNG")
    client.put("/aliases/best", json={"model": model_id})
    assert client.get("/models/best/evaluation").json()["model"] == model_id


def test_evaluate_jobs_are_checked_at_submission(
    client: TestClient, models: dict[str, str]
) -> None:
    client.put("/aliases/digits-best", json={"model": models["digits"]})
    answer = client.post("/jobs/evaluate", json={"model": "digits-best"})
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert answer.headers["Location"] == f"/jobs/{job['id']}"
    assert job["kind"] == "evaluate" and job["state"] == "queued"
    assert job["params"] == {
        "model": models["digits"],
        "requested_model": "digits-best",
        "dataset": "digits",
        "split": "val",
    }
    explicit = client.post(
        "/jobs/evaluate", json={"model": models["folders"], "dataset": "folders", "split": "train"}
    )
    assert explicit.status_code == 202, explicit.text

    for body, status, reason in (
        ({"model": "nope"}, 404, "no model or alias named 'nope'"),
        ({"model": "not a name!"}, 404, "no model"),
        ({"model": models["digits"], "dataset": "missing"}, 422, "does not exist"),
        ({"model": models["digits"], "dataset": "folders"}, 422, "other classes"),
        ({"model": models["digits"], "split": "test"}, 422, None),
        ({"dataset": "digits"}, 422, None),
        ({"model": models["digits"], "colour": "red"}, 422, None),
    ):
        answer = client.post("/jobs/evaluate", json=body)
        assert answer.status_code == status, (body, answer.text)
        if reason is not None:
            assert reason in answer.json()["detail"], answer.text
    assert len(client.get("/jobs", params={"kind": "evaluate"}).json()["jobs"]) == 2


def test_predict_jobs_are_checked_at_submission(client: TestClient, models: dict[str, str]) -> None:
    answer = client.post("/jobs/predict", json={"source": "sources/digits/test/images"})
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert answer.headers["Location"] == f"/jobs/{job['id']}"
    assert job["kind"] == "predict"
    assert job["params"] == {
        "model": models["folders"],  # the newest
        "requested_model": None,
        "source": "sources/digits/test/images",
        "top_k": 5,
    }
    # Not finished: no CSV yet; nor for jobs of other kinds, or none.
    assert client.get(f"/jobs/{job['id']}/predictions.csv").status_code == 404
    assert client.get("/jobs/nope/predictions.csv").status_code == 404
    for body, status, reason in (
        ({"source": "sources/missing"}, 422, "does not exist"),
        ({"source": "../outside"}, 422, "relative to the data root"),
        ({"source": "notes.txt"}, 422, "folder of images or a .zip"),
        ({"source": "sources/digits", "model": "nope"}, 404, "no model or alias"),
        ({"source": "sources/digits", "top_k": 0}, 422, None),
        ({"source": "sources/digits", "extra": 1}, 422, None),
    ):
        answer = client.post("/jobs/predict", json=body)
        assert answer.status_code == status, (body, answer.text)
        if reason is not None:
            assert reason in answer.json()["detail"], answer.text
    evaluate_job = client.get("/jobs", params={"kind": "evaluate"}).json()["jobs"]
    for other in evaluate_job[:1]:
        assert client.get(f"/jobs/{other['id']}/predictions.csv").status_code == 404


def test_no_model_yet_is_409(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    with TestClient(create_app(Settings(data_root=tmp_path))) as client:
        answer = client.post("/jobs/predict", json={"source": "images"})
        assert answer.status_code == 409 and "no model trained yet" in answer.json()["detail"]

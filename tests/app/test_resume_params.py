"""A resumed train job inherits every hyper-parameter of the job it continues, unless the
request sets it (itself, or through a preset or a recipe). The real app, job store and
embedded broker (no worker); a real sharded dataset and a real checkpoint of the parent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from core import layout
from core.config import Settings
from core.jobs import JobState, JobStore
from core.train_config import TrainConfig
from tests.utils.datasets import make_digits_tiny_imagenet
from worker import sharding

TINY: dict[str, Any] = {"width": 8, "levels": [1, 1]}
# A parent that differs from the defaults in every hyper-parameter a resume inherits.
PARENT: dict[str, Any] = {
    **TINY,
    "epochs": 6,
    "batch_size": 16,
    "learning_rate": 0.2,
    "momentum": 0.8,
    "lr_decay_epoch": 3,
    "lr_decay": 0.5,
    "l2": 0.001,
    "recipe": "strong",
    "warmup_epochs": 2,
    "label_smoothing": 0.2,
    "weight_decay": 0.01,
    "seed": 7,
}
INHERITED = [key for key in PARENT if key not in TINY]


@pytest.fixture(scope="module")
def checkpoint_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real checkpoint of the parent's network: built, compiled and saved by its recipe."""
    from worker.recipes import build_model, compile_model

    config = TrainConfig(dataset="digits", **PARENT)
    classes = [{"index": i, "wnid": f"n{i:08x}", "label": f"digit {i}"} for i in range(3)]
    model = build_model(config, classes)
    compile_model(model, config, Settings(data_root=tmp_path_factory.mktemp("unused"), xla=False))
    path = tmp_path_factory.mktemp("checkpoint") / "epoch.keras"
    model.save(path)
    return path


@pytest.fixture
def root(data_root: Path) -> Path:
    source = make_digits_tiny_imagenet(
        data_root / "src", classes=3, train_per_class=4, val_per_class=1, seed=0
    )
    sharding.shard_dataset(source, data_root / "datasets" / "digits", num_shards=1, seed=0)
    return data_root


@pytest.fixture
def client(root: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(data_root=root))) as test_client:
        yield test_client


def _parent(root: Path, checkpoint: Path, params: dict[str, Any], epochs: list[int]) -> str:
    """A cancelled train job with `params` as its record and checkpoints at `epochs`."""
    settings = Settings(data_root=root)
    store = JobStore(settings.effective_database_url)
    try:
        job = store.create("train", params)
        folder = layout.checkpoints_dir(settings, job.id)
        folder.mkdir(parents=True)
        for epoch in epochs:
            (folder / layout.checkpoint_name(epoch)).write_bytes(checkpoint.read_bytes())
        store.finish(job.id, JobState.CANCELLED)
    finally:
        store.engine.dispose()
    return job.id


def _strong_parent(root: Path, checkpoint: Path) -> str:
    params = TrainConfig(dataset="digits", **PARENT).model_dump()
    return _parent(root, checkpoint, params, [1, 2])


def _resume(client: TestClient, **body: Any) -> Any:
    return client.post("/jobs/train", json={"dataset": "digits", **body})


def test_a_bare_resume_inherits_every_hyper_parameter(
    client: TestClient, root: Path, checkpoint_file: Path
) -> None:
    parent = _strong_parent(root, checkpoint_file)
    answer = _resume(client, resume_from=parent)
    assert answer.status_code == 202, answer.text
    params = client.get(f"/jobs/{answer.json()['id']}").json()["params"]
    assert {key: params[key] for key in INHERITED} == {key: PARENT[key] for key in INHERITED}
    assert (params["width"], params["levels"]) == (8, [1, 1])
    assert (params["resume_from"], params["initial_epoch"]) == (parent, 2)
    # The stored params are a whole config: the worker reads back exactly these values.
    config = TrainConfig.model_validate(params)
    assert config.learning_rate_at(2) == TrainConfig(dataset="d", **PARENT).learning_rate_at(2)


def test_the_request_overrides_what_it_sets(
    client: TestClient, root: Path, checkpoint_file: Path
) -> None:
    parent = _strong_parent(root, checkpoint_file)
    answer = _resume(
        client, resume_from=parent, learning_rate=0.05, batch_size=32, epochs=9, initial_epoch=1
    )
    assert answer.status_code == 202, answer.text
    params = answer.json()["params"]
    assert (params["learning_rate"], params["batch_size"], params["epochs"]) == (0.05, 32, 9)
    assert params["initial_epoch"] == 1
    untouched = [key for key in INHERITED if key not in ("learning_rate", "batch_size", "epochs")]
    assert {key: params[key] for key in untouched} == {key: PARENT[key] for key in untouched}


def test_a_named_recipe_sets_its_values(
    client: TestClient, root: Path, checkpoint_file: Path
) -> None:
    parent = _strong_parent(root, checkpoint_file)
    # Naming the parent's own recipe is allowed; its defaults count as the request's own
    # (as a preset's do) where they do not contradict the checkpoint.
    answer = _resume(
        client,
        resume_from=parent,
        recipe="strong",
        l2=0.001,
        label_smoothing=0.2,
        weight_decay=0.01,
    )
    assert answer.status_code == 202, answer.text
    params = answer.json()["params"]
    assert (params["learning_rate"], params["warmup_epochs"]) == (0.05, 5)  # the recipe's
    assert (params["momentum"], params["seed"], params["lr_decay"]) == (0.8, 7, 0.5)  # inherited


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"recipe": "writeup"}, "recipe contradicts"),
        ({"momentum": 0.9}, "momentum contradicts"),
        ({"label_smoothing": 0.0}, "label_smoothing contradicts"),
        ({"preset": "half"}, "width contradicts"),  # the preset's width counts as explicit
        ({"epochs": 2}, "nothing to train"),
    ],
)
def test_a_resume_that_contradicts_its_checkpoint_is_422(
    client: TestClient, root: Path, checkpoint_file: Path, body: dict[str, Any], reason: str
) -> None:
    parent = _strong_parent(root, checkpoint_file)
    answer = _resume(client, resume_from=parent, **body)
    assert answer.status_code == 422, answer.text
    assert reason in answer.text
    assert client.get("/jobs", params={"state": "queued"}).json()["jobs"] == []


def test_a_parent_recorded_before_recipes_existed_resumes_as_writeup(
    client: TestClient, root: Path, checkpoint_file: Path
) -> None:
    # Only the fields a job record of the first release has.
    old = {"dataset": "digits", **TINY, "epochs": 4, "learning_rate": 0.05, "batch_size": 16}
    parent = _parent(root, checkpoint_file, old, [1])
    answer = _resume(client, resume_from=parent)
    assert answer.status_code == 202, answer.text
    params = answer.json()["params"]
    assert (params["learning_rate"], params["batch_size"], params["epochs"]) == (0.05, 16, 4)
    assert (params["recipe"], params["l2"], params["warmup_epochs"]) == ("writeup", 0.01, 0)

"""Tests of app.model_registry: which file a model id names, and the default model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.model_registry import ModelNotFound, NoModelYet, find_model_file, load_served_model
from core import layout
from core.config import Settings
from core.jobs import JobState, JobStore
from model.serving import ModelCache


def _register(store: JobStore, settings: Settings, source: Path | None) -> str:
    job = store.create("train", {"dataset": "d", "width": 8, "levels": [1, 1], "epochs": 1})
    if source is not None:
        path = layout.model_path(settings, job.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(source.read_bytes())
    store.finish(job.id, JobState.SUCCEEDED, result={})
    return job.id


@pytest.fixture
def sqlite_store(settings: Settings) -> Iterator[JobStore]:
    store = JobStore(settings.effective_database_url)
    store.create_schema()
    yield store
    store.engine.dispose()


def test_find_model_default_and_errors(
    settings: Settings, sqlite_store: JobStore, model_file: Path
) -> None:
    store = sqlite_store
    with pytest.raises(NoModelYet):
        find_model_file(store, settings, None)
    older = _register(store, settings, model_file)
    assert find_model_file(store, settings, None) == (older, layout.model_path(settings, older))
    newer = _register(store, settings, model_file)
    assert find_model_file(store, settings, None)[0] == newer
    assert find_model_file(store, settings, older)[0] == older
    no_file = _register(store, settings, None)  # newest, but its file is gone
    assert find_model_file(store, settings, None)[0] == newer
    queued = store.create("train", {"dataset": "d"}).id
    shard = store.create("shard", {"dataset": "d"}).id
    store.finish(shard, JobState.SUCCEEDED)
    for bad in ("missing", no_file, queued, shard, "../x"):
        with pytest.raises(ModelNotFound):
            find_model_file(store, settings, bad)
    cache = ModelCache(1)
    assert load_served_model(cache, store, settings, None).id == newer

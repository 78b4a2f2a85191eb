"""GET /models/{id}/labels and DELETE /models/{id} over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core import layout
from core.config import Settings
from core.jobs import JobStore
from tests.app.conftest import ClientFactory, class_names, random_image, register_model

pytestmark = pytest.mark.anyio


async def test_labels_from_classes_json_or_the_model_file(
    settings: Settings, model_file: Path, client_for: ClientFactory
) -> None:
    with_json = register_model(settings, model_file)
    written = class_names(3, prefix="written")
    layout.classes_path(settings, with_json).write_text(json.dumps(written))
    without = register_model(settings, model_file)  # the classes saved in the model
    async with client_for(settings) as client:
        first = await client.get(f"/models/{with_json}/labels")
        assert first.status_code == 200, first.text
        assert first.json() == {"classes": written}
        second = await client.get(f"/models/{without}/labels")
        assert second.json() == {"classes": class_names(3)}
        for unknown in ("nosuchmodel", "bad.name"):
            assert (await client.get(f"/models/{unknown}/labels")).status_code == 404


async def test_delete_a_model(
    settings: Settings, model_file: Path, client_for: ClientFactory
) -> None:
    model_id = register_model(settings, model_file)
    kept = register_model(settings, model_file)
    folder = layout.job_dir(settings, model_id)
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / layout.checkpoint_name(1)).write_bytes(b"x")
    (folder / "export").mkdir()
    (folder / "export" / "saved_model.pb").write_bytes(b"x")
    store = JobStore(settings.effective_database_url)
    async with client_for(settings) as client:
        image = {"image": ("a.jpg", random_image(0))}
        assert (await client.post("/predict", files=image, data={"model": model_id})).is_success
        assert model_id in (await client.get("/predict/stats")).json()["cached_models"]
        await client.put("/aliases/prod", json={"model": model_id})
        aliased = await client.delete(f"/models/{model_id}")
        assert aliased.status_code == 409 and "prod" in aliased.text
        await client.delete("/aliases/prod")
        resuming = store.create("train", {"dataset": "tiny", "resume_from": model_id})
        used = await client.delete(f"/models/{model_id}")
        assert used.status_code == 409 and resuming.id in used.text
        store.request_cancel(resuming.id)
        assert folder.is_dir()  # nothing was removed by the refusals

        deleted = await client.delete(f"/models/{model_id}")
        assert deleted.status_code == 204, deleted.text
        assert not folder.exists() and layout.job_dir(settings, kept).is_dir()
        assert model_id not in (await client.get("/predict/stats")).json()["cached_models"]
        listed = [m["id"] for m in (await client.get("/models")).json()["models"]]
        assert listed == [kept]
        assert (await client.get(f"/models/{model_id}")).status_code == 404
        assert (await client.get(f"/models/{model_id}/labels")).status_code == 404
        gone = await client.post("/predict", files=image, data={"model": model_id})
        assert gone.status_code == 404, gone.text
        refused = await client.put("/aliases/prod", json={"model": model_id})
        assert refused.status_code == 404
        # The job record stays, marked: its history is still there to read.
        job = (await client.get(f"/jobs/{model_id}")).json()
        assert job["state"] == "succeeded" and "deleted_at" in job["result"]
        assert (await client.delete(f"/models/{model_id}")).status_code == 404
        for unknown in ("nosuchmodel", "bad.name", resuming.id):
            assert (await client.delete(f"/models/{unknown}")).status_code == 404
    store.engine.dispose()

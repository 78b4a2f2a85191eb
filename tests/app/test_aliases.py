"""Aliases over HTTP: set, move, delete, predict through one, and move one under load."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.config import Settings
from tests.app.conftest import CLASSES, ClientFactory, random_image, register_model

pytestmark = pytest.mark.anyio


def _image(seed: int = 0) -> dict[str, tuple[str, bytes]]:
    return {"image": ("image.jpg", random_image(seed))}


async def test_set_move_delete_and_durable(
    settings: Settings, model_file: Path, other_model_file: Path, client_for: ClientFactory
) -> None:
    first = register_model(settings, model_file)
    second = register_model(settings, other_model_file)
    async with client_for(settings) as client:
        put = await client.put("/aliases/prod", json={"model": first})
        assert put.status_code == 200, put.text
        assert put.json() == {"alias": "prod", "model": first}
        assert (await client.get(f"/models/{first}")).json()["aliases"] == ["prod"]
        moved = await client.put("/aliases/prod", json={"model": second})
        assert moved.json() == {"alias": "prod", "model": second}
        # An alias given as the model is resolved to its model id.
        copied = await client.put("/aliases/staging", json={"model": "prod"})
        assert copied.json() == {"alias": "staging", "model": second}
        assert (await client.get(f"/models/{first}")).json()["aliases"] == []
        assert (await client.get(f"/models/{second}")).json()["aliases"] == ["prod", "staging"]
        listed = {m["id"]: m["aliases"] for m in (await client.get("/models")).json()["models"]}
        assert listed == {first: [], second: ["prod", "staging"]}
    async with client_for(settings) as client:  # a restarted API: the aliases are stored
        assert (await client.get("/aliases")).json() == {
            "aliases": [{"alias": "prod", "model": second}, {"alias": "staging", "model": second}]
        }
        assert (await client.delete("/aliases/staging")).status_code == 204
        assert (await client.delete("/aliases/staging")).status_code == 404
        assert (await client.delete("/aliases/no.such")).status_code == 404
        assert (await client.get("/aliases")).json() == {
            "aliases": [{"alias": "prod", "model": second}]
        }


async def test_bad_aliases_are_refused(
    settings: Settings, model_file: Path, client_for: ClientFactory
) -> None:
    model_id = register_model(settings, model_file)
    async with client_for(settings) as client:
        unknown = await client.put("/aliases/prod", json={"model": "nosuchmodel"})
        assert unknown.status_code == 404, unknown.text
        for name in ("bad.name", "-dash", "x" * 65):
            bad = await client.put(f"/aliases/{name}", json={"model": model_id})
            assert bad.status_code == 422, (name, bad.text)
        # An alias cannot shadow a job id: /predict would not know which was meant.
        shadow = await client.put(f"/aliases/{model_id}", json={"model": model_id})
        assert shadow.status_code == 409, shadow.text
        extra = await client.put("/aliases/prod", json={"model": model_id, "x": 1})
        assert extra.status_code == 422
        missing = await client.post("/predict", files=_image(), data={"model": "prod"})
        assert missing.status_code == 404, missing.text
        assert (await client.get("/aliases")).json() == {"aliases": []}


async def test_predict_through_an_alias_follows_its_moves(
    settings: Settings, model_file: Path, other_model_file: Path, client_for: ClientFactory
) -> None:
    first = register_model(settings, model_file)
    second = register_model(settings, other_model_file)
    async with client_for(settings) as client:
        await client.put("/aliases/prod", json={"model": first})
        one = await client.post("/predict", files=_image(), data={"model": "prod"})
        assert one.status_code == 200, one.text
        assert one.json()["model"] == first and len(one.json()["predictions"]) == CLASSES
        await client.put("/aliases/prod", json={"model": second})
        files = [("image", ("a.jpg", random_image(1))), ("image", ("b.jpg", random_image(2)))]
        batch = await client.post("/predict/batch", files=files, data={"model": "prod"})
        assert batch.status_code == 200, batch.text
        assert batch.json()["model"] == second
        assert all(len(r["predictions"]) == 4 for r in batch.json()["results"])
        labels = await client.get("/models/prod/labels")
        assert [c["label"] for c in labels.json()["classes"]] == [f"other {i}" for i in range(4)]


def test_moving_an_alias_under_concurrent_predict_fails_no_request(
    settings: Settings, model_file: Path, other_model_file: Path
) -> None:
    from app.main import create_app

    models = [register_model(settings, model_file), register_model(settings, other_model_file)]
    with TestClient(create_app(settings)) as client:
        assert client.put("/aliases/live", json={"model": models[0]}).status_code == 200
        for model_id in models:  # both loaded: the test is about switching, not loading
            assert client.post("/predict", files=_image(), data={"model": model_id}).is_success
        stop = threading.Event()

        def hammer(seed: int) -> list[tuple[int, str]]:
            answers = []
            while not stop.is_set():
                response = client.post("/predict", files=_image(seed), data={"model": "live"})
                answers.append((response.status_code, response.json().get("model", "")))
            return answers

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(hammer, seed) for seed in range(4)]
            for move in range(1, 13):
                target = models[move % 2]
                moved = client.put("/aliases/live", json={"model": target})
                assert moved.status_code == 200, moved.text
                after = client.post("/predict", files=_image(), data={"model": "live"})
                assert after.json()["model"] == target  # the very next request uses it
            stop.set()
            answers = [a for future in futures for a in future.result()]
    assert answers and all(status == 200 for status, _ in answers), answers[:5]
    assert {model for _, model in answers} == set(models)

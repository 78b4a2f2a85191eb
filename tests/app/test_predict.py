"""POST /predict and /predict/batch over HTTP: answers, batching, limits and errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from core.config import Settings
from tests.app.conftest import (
    CLASSES,
    ClientFactory,
    bomb_png,
    random_image,
    register_model,
)
from tests.utils.services import api_process, service_env

pytestmark = pytest.mark.anyio


def _image(data: bytes, name: str = "image.jpg") -> dict[str, tuple[str, bytes]]:
    return {"image": (name, data)}


def _direct_probabilities(model_file: Path, images: list[bytes]) -> np.ndarray:
    """The model called directly on the pixels training would decode from the same files."""
    import keras
    import tensorflow as tf

    from core.tf_decode import decode_image

    network = keras.saving.load_model(model_file, compile=False)
    pixels = tf.stack([decode_image(data) for data in images])
    return tf.nn.softmax(network(pixels, training=False)).numpy()


async def test_predict_answers_sorted_labelled_and_as_the_model_does(
    settings: Settings, model_file: Path, client_for: ClientFactory
) -> None:
    model_id = register_model(settings, model_file)
    image = random_image(0, size=(64, 64))
    async with client_for(settings) as client:
        answer = await client.post("/predict", files=_image(image), data={"top_k": "10"})
        default_k = await client.post("/predict", files=_image(image))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"model", "predictions"} and body["model"] == model_id
    predictions = body["predictions"]
    assert len(predictions) == CLASSES  # top_k clamped to the class count
    assert [set(p) for p in predictions] == [{"class_index", "wnid", "label", "probability"}] * 3
    probabilities = [p["probability"] for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True)
    for p in predictions:
        assert p["label"] == f"class {p['class_index']}"
        assert p["wnid"] == f"n{p['class_index']:08d}"
    expected = _direct_probabilities(model_file, [image])[0]
    got = np.zeros(CLASSES)
    got[[p["class_index"] for p in predictions]] = probabilities
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert default_k.json() == body  # default top_k 5 > 3 classes


async def test_any_size_and_format_is_resized_like_training(
    settings: Settings, model_file: Path, client_for: ClientFactory
) -> None:
    register_model(settings, model_file)
    images = [random_image(1, (300, 200), "PNG"), random_image(2, (17, 40), "JPEG")]
    async with client_for(settings) as client:
        answers = [
            await client.post("/predict", files=_image(data), data={"top_k": "1"})
            for data in images
        ]
    expected = _direct_probabilities(model_file, images)
    for answer, probs in zip(answers, expected, strict=True):
        assert answer.status_code == 200, answer.text
        (top,) = answer.json()["predictions"]
        assert top["class_index"] == int(np.argmax(probs))
        assert top["probability"] == pytest.approx(float(probs.max()), rel=1e-5)


async def test_batch_answers_one_result_per_image_in_order(
    settings: Settings, model_file: Path, client_for: ClientFactory
) -> None:
    model_id = register_model(settings, model_file)
    images = [random_image(seed) for seed in range(4)]
    files = [("image", (f"{i}.jpg", data)) for i, data in enumerate(images)]
    async with client_for(settings) as client:
        batch = await client.post("/predict/batch", files=files, data={"top_k": "2"})
        singles = [
            (await client.post("/predict", files=_image(data), data={"top_k": "2"})).json()
            for data in images
        ]
    assert batch.status_code == 200, batch.text
    assert batch.json()["model"] == model_id
    results = batch.json()["results"]
    assert len(results) == len(images)
    for result, single in zip(results, singles, strict=True):
        assert [p["class_index"] for p in result["predictions"]] == [
            p["class_index"] for p in single["predictions"]
        ]
        np.testing.assert_allclose(
            [p["probability"] for p in result["predictions"]],
            [p["probability"] for p in single["predictions"]],
            rtol=1e-5,
        )


async def _concurrent(client: httpx.AsyncClient, count: int) -> list[httpx.Response]:
    return await asyncio.gather(
        *(client.post("/predict", files=_image(random_image(i))) for i in range(count))
    )


async def test_concurrent_requests_run_as_one_batch(
    data_root: Path, model_file: Path, client_for: ClientFactory
) -> None:
    settings = Settings(data_root=data_root, batch_timeout_ms=50, batch_max_size=32)
    register_model(settings, model_file)
    async with client_for(settings) as client:
        await client.post("/predict", files=_image(random_image(0)))  # loads the model
        answers = await _concurrent(client, 16)
        stats = (await client.get("/predict/stats")).json()
    assert [a.status_code for a in answers] == [200] * 16
    assert stats["max_batch"] > 1, stats
    assert stats["images"] == 17
    assert sum(stats["recent_batch_sizes"]) == 17
    assert stats["batches"] < 17


async def test_batching_off_runs_each_request_alone(
    data_root: Path, model_file: Path, client_for: ClientFactory
) -> None:
    settings = Settings(data_root=data_root, batching=False)
    register_model(settings, model_file)
    async with client_for(settings) as client:
        answers = await _concurrent(client, 6)
        stats = (await client.get("/predict/stats")).json()
    assert [a.status_code for a in answers] == [200] * 6
    assert stats["recent_batch_sizes"] == [1] * 6


async def test_full_queue_answers_503_with_retry_after(
    data_root: Path, model_file: Path, client_for: ClientFactory
) -> None:
    # The first request holds the only place for 300 ms, waiting for others to join it.
    settings = Settings(data_root=data_root, predict_queue_size=1, batch_timeout_ms=300)
    register_model(settings, model_file)
    async with client_for(settings) as client:
        await client.post("/predict", files=_image(random_image(0)))  # loads the model
        answers = await _concurrent(client, 6)
        stats = (await client.get("/predict/stats")).json()
    codes = [a.status_code for a in answers]
    assert 200 in codes and 503 in codes, codes
    refused = next(a for a in answers if a.status_code == 503)
    assert int(refused.headers["Retry-After"]) >= 1
    assert "queue is full" in refused.json()["detail"]
    assert stats["rejected"] == codes.count(503)


async def test_new_model_becomes_the_default_without_restart(
    settings: Settings, model_file: Path, other_model_file: Path, client_for: ClientFactory
) -> None:
    first = register_model(settings, model_file)
    async with client_for(settings) as client:
        before = await client.post("/predict", files=_image(random_image(0)))
        second = register_model(settings, other_model_file)
        after = await client.post("/predict", files=_image(random_image(0)))
        pinned = await client.post("/predict", files=_image(random_image(0)), data={"model": first})
    assert before.json()["model"] == first
    assert after.json()["model"] == second
    assert after.json()["predictions"][0]["label"].startswith("other ")
    assert len(after.json()["predictions"]) == 4
    assert pinned.json()["model"] == first


async def test_no_model_yet_is_409(settings: Settings, client_for: ClientFactory) -> None:
    async with client_for(settings) as client:
        answer = await client.post("/predict", files=_image(random_image(0)))
    assert answer.status_code == 409
    assert "no model" in answer.json()["detail"]


async def test_unknown_or_unfinished_model_is_404(
    settings: Settings, model_file: Path, client_for: ClientFactory
) -> None:
    from core.jobs import JobStore

    model_id = register_model(settings, model_file)
    store = JobStore(settings.effective_database_url)
    running = store.create("train", {"dataset": "tiny"}).id
    shard = store.create("shard", {"dataset": "tiny"}).id
    store.engine.dispose()
    async with client_for(settings) as client:
        answers = {
            name: await client.post("/predict", files=_image(random_image(0)), data={"model": name})
            for name in ("nope", running, shard, "../../etc", "a\x00b", "x" * 500)
        }
        ok = await client.post("/predict", files=_image(random_image(0)), data={"model": model_id})
    assert {name: a.status_code for name, a in answers.items()} == dict.fromkeys(answers, 404)
    assert ok.status_code == 200


async def test_bad_images_are_400(
    settings: Settings, model_file: Path, client_for: ClientFactory
) -> None:
    register_model(settings, model_file)
    jpeg = random_image(3, (128, 128))
    png = random_image(3, (128, 128), "PNG")
    bad = {
        "text": b"this is not an image",
        "empty": b"",
        "truncated jpeg": jpeg[: len(jpeg) // 2],
        "truncated png": png[: len(png) // 2],
        "header only": jpeg[:200],
    }
    async with client_for(settings) as client:
        answers = {name: await client.post("/predict", files=_image(d)) for name, d in bad.items()}
        batch = await client.post(
            "/predict/batch",
            files=[("image", ("a.jpg", jpeg)), ("image", ("b.jpg", bad["truncated jpeg"]))],
        )
    assert {n: a.status_code for n, a in answers.items()} == dict.fromkeys(bad, 400), {
        n: a.text for n, a in answers.items()
    }
    assert batch.status_code == 400 and batch.json()["detail"].startswith("image 1:")


async def test_bad_forms(settings: Settings, model_file: Path, client_for: ClientFactory) -> None:
    register_model(settings, model_file)
    image = _image(random_image(0))
    async with client_for(settings) as client:
        missing = await client.post("/predict", data={"top_k": "3"}, files={"other": ("x", b"x")})
        zero_k = await client.post("/predict", files=image, data={"top_k": "0"})
        text_k = await client.post("/predict", files=image, data={"top_k": "many"})
        two = await client.post("/predict", files=[("image", ("a", b"1")), ("image", ("b", b"2"))])
        json_body = await client.post("/predict", json={"image": "x"})
        two_models = await client.post(
            "/predict", files=[*image.items(), ("model", (None, b"a")), ("model", (None, b"b"))]
        )
        extra = await client.post("/predict", files=image, data={"colour": "red"})
        broken = await client.post(
            "/predict",
            content=b"--xyz\r\nContent-Disposition: form-data; name=image\r\n\r\nabc",
            headers={"Content-Type": "multipart/form-data; boundary=xyz"},
        )
        long_boundary = await client.post(
            "/predict",
            content=b"--" + b"b" * 300 + b"--\r\n",
            headers={"Content-Type": "multipart/form-data; boundary=" + "b" * 300},
        )
    assert missing.status_code == 422
    assert zero_k.status_code == 422 and text_k.status_code == 422
    assert two.status_code == 422 and "/predict/batch" in two.json()["detail"]
    assert json_body.status_code == 400
    assert two_models.status_code == 422 and "given 2 times" in two_models.json()["detail"]
    assert extra.status_code == 422 and "unknown form field" in extra.json()["detail"]
    assert broken.status_code == 400
    assert long_boundary.status_code == 400


async def test_pixel_bombs_are_413(
    data_root: Path, model_file: Path, client_for: ClientFactory
) -> None:
    settings = Settings(data_root=data_root, max_image_pixels=100 * 100)
    register_model(settings, model_file)
    bomb = bomb_png()
    assert len(bomb) < 200_000
    async with client_for(settings) as client:
        huge = await client.post("/predict", files=_image(bomb, "bomb.png"))
        over = await client.post("/predict", files=_image(random_image(0, (101, 100), "PNG")))
        at_limit = await client.post("/predict", files=_image(random_image(0, (100, 100), "PNG")))
    assert huge.status_code == 413, huge.text
    assert over.status_code == 413 and "101x100" in over.json()["detail"]
    assert at_limit.status_code == 200


async def _chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_upload_limit_holds_whatever_content_length_says(
    data_root: Path, model_file: Path, client_for: ClientFactory
) -> None:
    settings = Settings(data_root=data_root, max_upload_bytes=64 * 1024)
    register_model(settings, model_file)
    big = httpx.Request("POST", "http://x", files=_image(bytes(200 * 1024)))
    body = big.read()
    content_type = big.headers["Content-Type"]
    async with client_for(settings) as client:
        honest = await client.post("/predict", content=body, headers={"Content-Type": content_type})
        lying = await client.post(
            "/predict",
            content=_chunks(body),
            headers={"Content-Type": content_type, "Content-Length": "1000"},
        )
        chunked = await client.post(
            "/predict", content=_chunks(body), headers={"Content-Type": content_type}
        )
        claims_huge = await client.post(
            "/predict",
            content=b"",
            headers={"Content-Type": content_type, "Content-Length": str(10**12)},
        )
        small = await client.post("/predict", files=_image(random_image(0)))
    assert honest.status_code == 413
    assert lying.status_code == 413
    assert chunked.status_code == 413
    assert claims_huge.status_code == 413
    assert small.status_code == 200


@pytest.mark.slow
def test_real_server(data_root: Path, model_file: Path, tmp_path: Path) -> None:
    """The API under uvicorn: a prediction, and an oversized upload refused up front."""
    settings = Settings(data_root=data_root)
    model_id = register_model(settings, model_file)
    env = service_env(data_root, TINYRES_MAX_UPLOAD_BYTES=str(64 * 1024))
    with (
        api_process(env, log=tmp_path / "api.log") as base,
        httpx.Client(base_url=base, timeout=60) as http,
    ):
        answer = http.post("/predict", files=_image(random_image(0)), data={"top_k": "2"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"] == model_id
        assert len(answer.json()["predictions"]) == 2
        too_big = http.post("/predict", files=_image(bytes(100 * 1024)))
        assert too_big.status_code == 413
        assert http.post("/predict", files=_image(b"GIF89a nope")).status_code == 400
        stats = http.get("/predict/stats").json()
        assert stats["images"] == 1 and stats["cached_models"] == [model_id]

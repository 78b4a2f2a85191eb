"""The streaming multipart reader (app.multipart): form bombs and bodies that lie about
themselves are refused quickly, over HTTP."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator

import pytest

from app.main import create_app
from app.multipart import (
    DEFAULT_TOP_K,
    BodyTooLarge,
    FormFieldInvalid,
    MalformedBody,
    PredictForm,
    read_form,
)
from core.config import Settings
from tests.app.conftest import ClientFactory, random_image
from tests.app.hostile import (
    BOUNDARY,
    LIMIT,
    MULTIPART,
    chunks,
    form,
    image_form,
    many_parts,
    part,
    raw,
    timed_post,
    warm,
)

pytestmark = pytest.mark.anyio


async def test_form_bombs_are_refused_quickly(
    upload_settings: Settings, client_for: ClientFactory
) -> None:
    image = part("image", random_image(0), "a.jpg")
    huge_field = b"m" * (LIMIT - 64 * 1024)
    cases: dict[str, tuple[str, bytes, int]] = {
        "5000 unknown fields": ("/predict", form(image, *[part("x", b"v")] * 5000), 413),
        "5000 image parts": ("/predict/batch", many_parts(5000, "image"), 413),
        "20000 tiny parts": ("/predict", many_parts(20_000), 413),
        "a model field of ~1 MB": ("/predict", form(image, part("model", huge_field)), 404),
        "a top_k of ~1 MB of digits": (
            "/predict",
            form(image, part("top_k", b"9" * 900_000)),
            422,
        ),
        "an unknown field": ("/predict", form(image, part("extra", b"1")), 422),
        "a 900 KB file name": (
            "/predict",
            form(part("image", random_image(0), "a" * 900_000 + ".jpg")),
            400,  # python-multipart bounds a part's headers
        ),
        "a 900 KB part header": (
            "/predict",
            form(image, b"--" + BOUNDARY.encode() + b"\r\nX-Junk: " + b"j" * 900_000 + b"\r\n"),
            400,
        ),
        "a field over the limit": ("/predict", form(image, part("model", b"m" * LIMIT)), 413),
    }
    async with client_for(upload_settings) as client:
        await warm(client)
        answers = {
            name: await timed_post(client, path, body) for name, (path, body, _) in cases.items()
        }
    codes = {name: answer.status_code for name, (answer, _) in answers.items()}
    assert codes == {name: expected for name, (_, _, expected) in cases.items()}, {
        n: a.text[:200] for n, (a, _) in answers.items()
    }
    slow = {name: round(seconds, 2) for name, (_, seconds) in answers.items() if seconds > 2}
    assert not slow, slow


async def test_bodies_that_lie_about_themselves(
    upload_settings: Settings, client_for: ClientFactory
) -> None:
    form = image_form(random_image(0))
    app = create_app(upload_settings)
    async with app.router.lifespan_context(app):
        # (A Content-Length that is not a number never gets here: uvicorn's h11 answers
        # 400 itself; see test_bad_content_lengths_on_the_real_server.)
        huge, _ = await raw(
            app,
            "POST",
            b"/predict",
            [(b"content-type", MULTIPART.encode()), (b"content-length", b"9" * 30)],
            form,
        )
    assert huge == 413
    async with client_for(upload_settings) as client:
        # A gzip bomb as the body: bodies are never inflated, so it is just bytes (400).
        gz, seconds = await timed_post(
            client, "/predict", gzip.compress(form * 2000), **{"Content-Encoding": "gzip"}
        )
        # A chunked body many times the limit, dribbled in: cut off at the limit.
        chunked, _ = await timed_post(client, "/predict", chunks(form + bytes(8 * LIMIT)))
        # A multipart body under another content type, and the other way round.
        as_json, _ = await timed_post(client, "/predict", form, "application/json")
        no_boundary, _ = await timed_post(client, "/predict", form, "multipart/form-data")
    assert gz.status_code == 400 and seconds < 2
    assert chunked.status_code == 413
    assert as_json.status_code == 400 and no_boundary.status_code == 400


async def _stream(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _headers(body: bytes) -> dict[str, str]:
    return {"content-type": MULTIPART, "content-length": str(len(body))}


async def test_read_form_splits_the_fields_as_the_body_streams_in() -> None:
    body = form(part("image", b"one", "a.jpg"), part("image", b"two"), part("top_k", b" 3 "))
    halves = (body[: len(body) // 2], body[len(body) // 2 :])
    got = await read_form(_headers(body), _stream(*halves), max_bytes=LIMIT, max_images=2)
    assert got == PredictForm(images=[b"one", b"two"], model=None, top_k=3)
    single = form(part("image", b"x"))
    one = await read_form(_headers(single), _stream(single), LIMIT, 1)
    assert one.top_k == DEFAULT_TOP_K and one.model is None


_MP = {"content-type": MULTIPART}


@pytest.mark.parametrize(
    ("body", "headers", "error"),
    [
        (form(part("image", b"x")), {"content-type": "text/plain"}, MalformedBody),
        (
            form(part("image", b"x")),
            {**_MP, "content-length": "x"},
            MalformedBody,
        ),
        (form(part("image", b"x"))[:-8], _MP, MalformedBody),
        (form(part("image", b"x" * 2000)), _MP, BodyTooLarge),
        (b"", {**_MP, "content-length": "5000"}, BodyTooLarge),
        (
            form(part("image", b"x"), part("image", b"y")),
            _MP,
            FormFieldInvalid,
        ),
        (form(part("model", b"m")), _MP, FormFieldInvalid),
        (
            form(part("image", b"x"), part("top_k", b"0")),
            _MP,
            FormFieldInvalid,
        ),
        (
            form(part("image", b"x"), part("top_k", b"a")),
            _MP,
            FormFieldInvalid,
        ),
        (
            form(part("image", b"x"), part("other", b"1")),
            _MP,
            FormFieldInvalid,
        ),
    ],
)
async def test_read_form_raises_domain_errors(
    body: bytes, headers: dict[str, str], error: type[Exception]
) -> None:
    with pytest.raises(error):
        await read_form(headers, _stream(body), max_bytes=1024, max_images=1)

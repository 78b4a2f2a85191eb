"""Classifying uploads (app.prediction): files that are not images, cut-short images
and pixel bombs are refused quickly, and memory stays flat under hostile uploads."""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from typing import Any

import httpx
import psutil
import pytest

from core.config import Settings
from tests.app.conftest import ClientFactory, random_image
from tests.app.hostile import (
    LIMIT,
    chunks,
    form,
    gif_claiming,
    image_form,
    jpeg_claiming,
    many_parts,
    part,
    timed_post,
    warm,
)

pytestmark = pytest.mark.anyio


NOT_IMAGES = {
    "pdf": b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n",
    "zip": b"PK\x03\x04" + bytes(26) + b"PK\x05\x06" + bytes(18),
    "html": b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>",
    "svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="99999" height="99999"/>',
    "elf": b"\x7fELF\x02\x01\x01" + bytes(57),
    "gzip bomb": gzip.compress(bytes(8 * 1024 * 1024)),
    "jpeg magic only": b"\xff\xd8\xff\xe0",
    "png magic only": b"\x89PNG\r\n\x1a\n",
    "random": os.urandom(4096),
}


def _truncations() -> dict[str, bytes]:
    jpeg = random_image(7, (256, 256))
    cuts = {f"{int(f * 100)}%": jpeg[: int(len(jpeg) * f)] for f in (0.02, 0.1, 0.3, 0.7, 0.9)}
    return {"SOI only": jpeg[:2], **cuts}


async def test_images_that_are_not_images_or_are_cut_short_are_400(
    upload_settings: Settings, client_for: ClientFactory
) -> None:
    cases = {**{f"{k} named .jpg": v for k, v in NOT_IMAGES.items()}, **_truncations()}
    async with client_for(upload_settings) as client:
        await warm(client)
        answers = {n: await timed_post(client, "/predict", image_form(d)) for n, d in cases.items()}
    codes = {name: answer.status_code for name, (answer, _) in answers.items()}
    assert codes == dict.fromkeys(cases, 400), {n: a.text for n, (a, _) in answers.items()}
    slow = {name: round(seconds, 2) for name, (_, seconds) in answers.items() if seconds > 2}
    assert not slow, slow


async def test_pixel_bombs_in_other_formats_are_413(
    upload_settings: Settings, client_for: ClientFactory
) -> None:
    bombs = {
        "jpeg 65500x65500": jpeg_claiming(65500, 65500),
        "jpeg 5000x5000": jpeg_claiming(5000, 5000),  # over 4096x4096, under Pillow's own
        "gif 65535x65535": gif_claiming(65535, 65535),
    }
    async with client_for(upload_settings) as client:
        await warm(client)
        answers = {n: await timed_post(client, "/predict", image_form(d)) for n, d in bombs.items()}
        batch, _ = await timed_post(
            client,
            "/predict/batch",
            form(
                part("image", random_image(1), "ok.jpg"),
                part("image", bombs["gif 65535x65535"], "b.gif"),
            ),
        )
    codes = {name: answer.status_code for name, (answer, _) in answers.items()}
    assert codes == dict.fromkeys(bombs, 413), {n: a.text for n, (a, _) in answers.items()}
    assert all(seconds < 2 for _, seconds in answers.values())
    assert batch.status_code == 413 and batch.json()["detail"].startswith("image 1:")


async def test_memory_stays_flat_under_hostile_uploads(
    upload_settings: Settings, client_for: ClientFactory
) -> None:
    image = part("image", random_image(0), "a.jpg")
    endless = part("image", b"", "a.jpg")[:-2] + bytes(4 * LIMIT)  # a part that never ends
    hostile: list[tuple[str, Callable[[], Any]]] = [
        ("/predict", lambda: chunks(endless)),  # chunked, no Content-Length
        ("/predict/batch", lambda: many_parts(5000, "image")),
        ("/predict", lambda: form(image, part("model", b"m" * (LIMIT - 4096)))),
        ("/predict", lambda: image_form(NOT_IMAGES["gzip bomb"])),
        ("/predict", lambda: image_form(jpeg_claiming(65500, 65500))),
        ("/predict", lambda: image_form(_truncations()["70%"])),
    ]
    process = psutil.Process()

    async def one_round(client: httpx.AsyncClient) -> list[int]:
        codes = []
        for path, body in hostile:
            answer, _ = await timed_post(client, path, body())
            codes.append(answer.status_code)
        return codes

    async with client_for(upload_settings) as client:
        for _ in range(3):  # warm up: model loaded, decoders compiled, allocator settled
            assert await one_round(client) == [413, 413, 404, 400, 413, 400]
        before = process.memory_info().rss
        for _ in range(15):
            await one_round(client)
        after = process.memory_info().rss
    growth = (after - before) / 2**20
    # 15 rounds push ~100 MB of hostile bodies through; what stays must be far less.
    assert growth < 48, f"resident memory grew by {growth:.1f} MiB"

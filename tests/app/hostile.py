"""Tools of the hostile-input tests: a recorder of the files the process reads, raw ASGI
requests, multipart bodies and lying images built by hand."""

from __future__ import annotations

import json
import os
import struct
import sys
import time
from collections.abc import AsyncIterator, Iterator, MutableMapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
from fastapi import FastAPI

from app.main import create_app
from core.config import Settings
from tests.app.conftest import random_image

BOUNDARY = "hostileboundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
LIMIT = 1024 * 1024  # max_upload_bytes of these tests


_recorded: list[list[str]] = []
_hook_installed = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _recorded and event in ("open", "os.listdir", "os.scandir") and args:
        target = args[0]
        if isinstance(target, str | bytes | os.PathLike):
            _recorded[-1].append(os.fsdecode(target))


@contextmanager
def reads_of(folder: Path) -> Iterator[list[str]]:
    """Yields a list that ends up holding every path under `folder` (symlinks resolved)
    that the process opened or listed meanwhile, in any thread."""
    global _hook_installed
    if not _hook_installed:
        sys.addaudithook(_audit)  # for good: audit hooks cannot be removed
        _hook_installed = True
    found: list[str] = []
    _recorded.append([])
    try:
        yield found
    finally:
        opened = _recorded.pop()
        real = os.path.realpath(folder)
        for path in opened:
            resolved = os.path.realpath(path)
            if resolved == real or resolved.startswith(real + os.sep):
                found.append(f"{path} -> {resolved}")


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tinyres") as client:
            yield app, client


async def raw(
    app: FastAPI,
    method: str,
    target: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
) -> tuple[int, bytes]:
    """One request with the request target exactly as a client sent it (an HTTP client
    would normalise `..` and escapes away); the path is decoded the way uvicorn does."""
    raw_path, _, query = target.partition(b"?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(raw_path.decode("ascii")),
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"tinyres"), *(headers or [])],
        "client": ("127.0.0.1", 1234),
        "server": ("tinyres", 80),
    }
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


def manifest_json(name: str) -> str:
    """A minimal valid manifest of dataset `name` (one class, no shard files)."""
    classes = [{"index": 0, "wnid": "n00000000", "label": "zero"}]
    split = {"count": 1, "per_class": {"n00000000": 1}, "shards": [], "bytes": 0, "skipped": []}
    return json.dumps(
        {
            "name": name,
            "source": "sources/x",
            "layout": "class_folders",
            "seed": 0,
            "num_shards": 1,
            "compression": "GZIP",
            "created_at": "2024-01-01T00:00:00+00:00",
            "image_size": 64,
            "classes": classes,
            "splits": {"train": split},
            "count": 1,
            "bytes": 0,
            "skipped_total": 0,
        }
    )


def part(name: str, data: bytes, filename: str | None = None, ctype: str = "") -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
    if ctype:
        head += f"Content-Type: {ctype}\r\n"
    return head.encode() + b"\r\n" + data + b"\r\n"


def form(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def image_form(data: bytes, filename: str = "cat.jpg") -> bytes:
    return form(part("image", data, filename, "image/jpeg"))


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real JPEG whose frame header (SOF0) claims another size: a pixel bomb in a few KB."""
    jpeg = bytearray(random_image(0, (32, 32)))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(jpeg)


def gif_claiming(width: int, height: int) -> bytes:
    screen = struct.pack("<HHBBB", width, height, 0, 0, 0)
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
    return b"GIF89a" + screen + image + b"\x02\x02\x44\x01\x00\x3b"


async def timed_post(
    client: httpx.AsyncClient, path: str, body: Any, content_type: str = MULTIPART, **headers: str
) -> tuple[httpx.Response, float]:
    start = time.perf_counter()
    answer = await client.post(
        path, content=body, headers={"Content-Type": content_type, **headers}
    )
    return answer, time.perf_counter() - start


async def warm(client: httpx.AsyncClient) -> None:
    """One good prediction first: the model is loaded and the decoder compiled, so the
    timings below measure the hostile requests alone."""
    answer, _ = await timed_post(client, "/predict", image_form(random_image(0)))
    assert answer.status_code == 200, answer.text


async def chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def many_parts(count: int, name: str = "x") -> bytes:
    return form(*(part(name, b"v") for _ in range(count)))

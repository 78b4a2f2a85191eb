"""Hostile input over HTTP: paths and names that try to leave the data root, uploads built
to exhaust memory or time, and the API key on every route.

"Nothing outside the data root is read" is checked with a Python audit hook that records
every file the process opens (and every folder it lists) while the requests run, symlinks
resolved afterwards.

Tests of /predict that tests/app/test_predict.py already has (an honest, lying or missing
Content-Length over the limit, a PNG pixel bomb, text and half a JPEG as images, bad form
fields) are not repeated here.
"""

from __future__ import annotations

import gzip
import hmac
import json
import os
import re
import socket
import struct
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import psutil
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from app.main import create_app
from core.config import Settings
from tests.app.conftest import ClientFactory, random_image, register_model
from tests.utils.services import api_process, service_env

pytestmark = pytest.mark.anyio

BOUNDARY = "hostileboundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
LIMIT = 1024 * 1024  # max_upload_bytes of these tests


# --- what the process reads ------------------------------------------------------------

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


def test_the_read_recorder_sees_reads_through_symlinks(tmp_path: Path) -> None:
    """The instrument itself: a read through a symlink, in another thread, is seen."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "f").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "outside")
    with reads_of(tmp_path / "outside") as reads:
        reader = threading.Thread(target=(tmp_path / "link" / "f").read_text)
        reader.start()
        reader.join()
        os.listdir(tmp_path / "link")
    assert len(reads) == 2 and all("/link" in r for r in reads), reads


# --- an app in process, and raw requests to it ----------------------------------------


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


def _manifest(name: str) -> str:
    classes = [{"index": 0, "wnid": "n00000000", "label": "zero"}]
    split = {"count": 1, "per_class": {"n00000000": 1}, "shards": [], "bytes": 0, "skipped": []}
    return json.dumps(
        {
            "name": name,
            "source": "sources/x",
            "seed": 0,
            "compression": "GZIP",
            "created_at": "2024-01-01T00:00:00+00:00",
            "classes": classes,
            "splits": {"train": split},
            "count": 1,
            "bytes": 0,
            "skipped_total": 0,
        }
    )


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder next to the data root, with things worth stealing."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("secret")
    (folder / "manifest.json").write_text(_manifest("stolen"))
    (folder / "images").mkdir()
    (folder / "images" / "a.jpg").write_bytes(random_image(0))
    return folder


@pytest.fixture
def trapped_root(data_root: Path, outside: Path) -> Path:
    """The data root, with symlinks out of it where a client could name them."""
    (data_root / "sources" / "real").mkdir(parents=True)
    (data_root / "link").symlink_to(outside)
    (data_root / "sources" / "images-link").symlink_to(outside / "images")
    (data_root / "loop").symlink_to("loop")
    datasets = data_root / "datasets"
    datasets.mkdir()
    (datasets / "evil").symlink_to(outside)  # a dataset folder that is really elsewhere
    (datasets / "sneaky").mkdir()  # a real folder whose manifest is a symlink out
    (datasets / "sneaky" / "manifest.json").symlink_to(outside / "manifest.json")
    (datasets / "good").mkdir()
    (datasets / "good" / "manifest.json").write_text(_manifest("good"))
    (datasets / "bad.name").mkdir()  # a folder no client could have named
    (datasets / "bad.name" / "manifest.json").write_text(_manifest("bad.name"))
    (datasets / "broken").mkdir()
    (datasets / "broken" / "manifest.json").write_text("{not json")
    return data_root


# --- 3. paths and names ---------------------------------------------------------------

_SEGMENTS = [
    b"..",
    b"%2e%2e",
    b"%2E%2E",
    b"..%2f..%2fetc%2fpasswd",
    b"%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    b"..%5c..%5cetc",
    b"%252e%252e%252f",
    b"%00",
    b"a%00b",
    b"%2fetc%2fpasswd",
    b"%ff%fe",
    b"evil",
    b"sneaky",
    b"link",
    b"x" * 300,
    b"a" * 65,
]
_TEMPLATES = [
    ("GET", b"/datasets/{}"),
    ("GET", b"/datasets/{}/preview.png"),
    ("GET", b"/jobs/{}"),
    ("GET", b"/jobs/{}/history.png"),
    ("GET", b"/models/{}"),
    ("POST", b"/jobs/{}/cancel"),
]
_RAW_TARGETS = [
    b"/datasets/../../etc/passwd",
    b"/datasets/%2e%2e/%2e%2e/etc/passwd",
    b"/../../../etc/passwd",
    b"/datasets/evil/../../link/secret.txt",
    b"/datasets?name=../../etc/passwd",
    b"/jobs?kind=../../etc&state=%00",
]


async def test_traversal_in_url_paths_is_4xx_and_reads_nothing_outside(
    trapped_root: Path, outside: Path
) -> None:
    settings = Settings(data_root=trapped_root)
    answers: dict[bytes, int] = {}
    async with running(settings) as (app, _):
        with reads_of(outside) as reads:
            for method, template in _TEMPLATES:
                for segment in _SEGMENTS:
                    target = template.replace(b"{}", segment)
                    answers[target], body = await raw(app, method, target)
                    assert b"secret" not in body and b"stolen" not in body, target
            for target in _RAW_TARGETS:
                answers[target], body = await raw(app, "GET", target)
                assert b"secret" not in body and b"stolen" not in body, target
    bad = {t: code for t, code in answers.items() if not 400 <= code < 500}
    # Query strings that are not valid filters are 422; /datasets ignores unknown ones.
    assert bad == {b"/datasets?name=../../etc/passwd": 200}, bad
    assert reads == []


async def test_a_dataset_folder_that_leads_outside_is_absent(
    trapped_root: Path, outside: Path
) -> None:
    settings = Settings(data_root=trapped_root)
    async with running(settings) as (_, client):
        with reads_of(outside) as reads:
            listing = await client.get("/datasets")
            evil = await client.get("/datasets/evil")
            sneaky = await client.get("/datasets/sneaky")
            previews = [await client.get(f"/datasets/{n}/preview.png") for n in ("evil", "sneaky")]
            train = await client.post("/jobs/train", json={"dataset": "evil", "epochs": 1})
            train_sneaky = await client.post("/jobs/train", json={"dataset": "sneaky"})
            # Writing into it would write outside the data root: refused, with overwrite too.
            shard = await client.post(
                "/jobs/shard",
                json={"source": "sources/real", "dataset": "evil", "overwrite": True},
            )
            jobs = await client.get("/jobs")
    assert listing.status_code == 200, listing.text
    # The good dataset is listed; the symlinked, oddly named and broken ones are left out.
    assert [d["name"] for d in listing.json()["datasets"]] == ["good"]
    assert evil.status_code == 404 and sneaky.status_code == 404
    assert [p.status_code for p in previews] == [404, 404]
    assert train.status_code == 422 and "does not exist" in train.json()["detail"]
    assert train_sneaky.status_code == 422
    assert shard.status_code == 422 and "leaves the data root" in shard.json()["detail"]
    assert jobs.json() == {"jobs": []}
    assert reads == []


@pytest.mark.parametrize(
    "source",
    [
        "../outside",
        "/etc",
        "/etc/passwd",
        "link",
        "link/images",
        "sources/images-link",
        "sources/../../outside",
        "sources/real/../../../outside",
        "./../outside",
        "a\x00b",
        "sources\\..\\..\\outside",
        "%2e%2e%2foutside",
        "..%2foutside",
        "%2e%2e/outside",
        "loop",
        "loop/x",
        "x" * 300,
        "a/" * 600,
        "\u2025/outside",
        "~/",
    ],
)
async def test_shard_sources_outside_the_root_are_422(
    trapped_root: Path, outside: Path, source: str
) -> None:
    settings = Settings(data_root=trapped_root)
    async with running(settings) as (_, client):
        with reads_of(outside) as reads:
            answer = await client.post("/jobs/shard", json={"source": source, "dataset": "d"})
            jobs = await client.get("/jobs")
    assert answer.status_code == 422, answer.text
    assert jobs.json() == {"jobs": []}
    assert reads == []


async def test_absolute_source_naming_the_outside_folder_is_422(
    trapped_root: Path, outside: Path
) -> None:
    settings = Settings(data_root=trapped_root)
    async with running(settings) as (_, client):
        answers = [
            await client.post("/jobs/shard", json={"source": source, "dataset": "d"})
            for source in (str(outside), str(outside / "images"), f"{trapped_root}/link")
        ]
    assert [a.status_code for a in answers] == [422] * 3


@pytest.mark.parametrize(
    "name", ["../x", "..", ".", "/abs", "a/b", "a\x00", "x" * 65, "é", "a\n", "-x", "%2e%2e"]
)
async def test_bad_names_in_bodies_are_422(trapped_root: Path, name: str) -> None:
    settings = Settings(data_root=trapped_root)
    async with running(settings) as (_, client):
        shard = await client.post("/jobs/shard", json={"source": "sources/real", "dataset": name})
        train = await client.post("/jobs/train", json={"dataset": name})
        resume = await client.post("/jobs/train", json={"dataset": "good", "resume_from": name})
    assert [shard.status_code, train.status_code, resume.status_code] == [422] * 3


@pytest.mark.parametrize(
    "body",
    [
        b'{"source": "sources/real", "dataset": "\\ud800"}',
        b'{"source": "\\udfff", "dataset": "d"}',
        b'{"source": "sources/real", "dataset": "d", "seed": NaN}',
        b'{"source": "sources/real", "dataset": "d", "num_shards": Infinity}',
        b'{"source": "sources/real", "dataset": "d", "num_shards": 1e999999}',
        b'{"source": "sources/real", "dataset": -Infinity}',
        b'{"source": "sources/real", "dataset": "d", "seed": 1' + b"0" * 5000 + b"}",
        b'{"source": "sources/real", "dataset": "d", "\\ud800": 1}',
        b"\xff\xfe\x00{",
    ],
)
async def test_json_that_cannot_be_echoed_back_is_still_a_clean_4xx(
    trapped_root: Path, body: bytes
) -> None:
    """FastAPI's 422 echoes the input; NaN or a lone surrogate in it made that a 500."""
    settings = Settings(data_root=trapped_root)
    async with running(settings) as (_, client):
        answer = await client.post(
            "/jobs/shard", content=body, headers={"Content-Type": "application/json"}
        )
    assert answer.status_code in (400, 422), answer.text
    json.loads(answer.text)  # strict JSON: no NaN token, no lone surrogate
    assert "detail" in answer.json()


# --- 4. uploads -----------------------------------------------------------------------


def _part(name: str, data: bytes, filename: str | None = None, ctype: str = "") -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
    if ctype:
        head += f"Content-Type: {ctype}\r\n"
    return head.encode() + b"\r\n" + data + b"\r\n"


def _form(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def _image_form(data: bytes, filename: str = "cat.jpg") -> bytes:
    return _form(_part("image", data, filename, "image/jpeg"))


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A real JPEG whose frame header (SOF0) claims another size: a pixel bomb in a few KB."""
    jpeg = bytearray(random_image(0, (32, 32)))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(jpeg)


def _gif_claiming(width: int, height: int) -> bytes:
    screen = struct.pack("<HHBBB", width, height, 0, 0, 0)
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
    return b"GIF89a" + screen + image + b"\x02\x02\x44\x01\x00\x3b"


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


@pytest.fixture
def upload_settings(data_root: Path, model_file: Path) -> Settings:
    settings = Settings(data_root=data_root, max_upload_bytes=LIMIT, max_image_pixels=4096 * 4096)
    register_model(settings, model_file)
    return settings


async def _timed_post(
    client: httpx.AsyncClient, path: str, body: Any, content_type: str = MULTIPART, **headers: str
) -> tuple[httpx.Response, float]:
    start = time.perf_counter()
    answer = await client.post(
        path, content=body, headers={"Content-Type": content_type, **headers}
    )
    return answer, time.perf_counter() - start


async def _warm(client: httpx.AsyncClient) -> None:
    """One good prediction first: the model is loaded and the decoder compiled, so the
    timings below measure the hostile requests alone."""
    answer, _ = await _timed_post(client, "/predict", _image_form(random_image(0)))
    assert answer.status_code == 200, answer.text


async def _chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_images_that_are_not_images_or_are_cut_short_are_400(
    upload_settings: Settings, client_for: ClientFactory
) -> None:
    cases = {**{f"{k} named .jpg": v for k, v in NOT_IMAGES.items()}, **_truncations()}
    async with client_for(upload_settings) as client:
        await _warm(client)
        answers = {
            n: await _timed_post(client, "/predict", _image_form(d)) for n, d in cases.items()
        }
    codes = {name: answer.status_code for name, (answer, _) in answers.items()}
    assert codes == dict.fromkeys(cases, 400), {n: a.text for n, (a, _) in answers.items()}
    slow = {name: round(seconds, 2) for name, (_, seconds) in answers.items() if seconds > 2}
    assert not slow, slow


async def test_pixel_bombs_in_other_formats_are_413(
    upload_settings: Settings, client_for: ClientFactory
) -> None:
    bombs = {
        "jpeg 65500x65500": _jpeg_claiming(65500, 65500),
        "jpeg 5000x5000": _jpeg_claiming(5000, 5000),  # over 4096x4096, under Pillow's own
        "gif 65535x65535": _gif_claiming(65535, 65535),
    }
    async with client_for(upload_settings) as client:
        await _warm(client)
        answers = {
            n: await _timed_post(client, "/predict", _image_form(d)) for n, d in bombs.items()
        }
        batch, _ = await _timed_post(
            client,
            "/predict/batch",
            _form(
                _part("image", random_image(1), "ok.jpg"),
                _part("image", bombs["gif 65535x65535"], "b.gif"),
            ),
        )
    codes = {name: answer.status_code for name, (answer, _) in answers.items()}
    assert codes == dict.fromkeys(bombs, 413), {n: a.text for n, (a, _) in answers.items()}
    assert all(seconds < 2 for _, seconds in answers.values())
    assert batch.status_code == 413 and batch.json()["detail"].startswith("image 1:")


def _many_parts(count: int, name: str = "x") -> bytes:
    return _form(*(_part(name, b"v") for _ in range(count)))


async def test_form_bombs_are_refused_quickly(
    upload_settings: Settings, client_for: ClientFactory
) -> None:
    image = _part("image", random_image(0), "a.jpg")
    huge_field = b"m" * (LIMIT - 64 * 1024)
    cases: dict[str, tuple[str, bytes, int]] = {
        "5000 unknown fields": ("/predict", _form(image, *[_part("x", b"v")] * 5000), 413),
        "5000 image parts": ("/predict/batch", _many_parts(5000, "image"), 413),
        "20000 tiny parts": ("/predict", _many_parts(20_000), 413),
        "a model field of ~1 MB": ("/predict", _form(image, _part("model", huge_field)), 404),
        "a top_k of ~1 MB of digits": (
            "/predict",
            _form(image, _part("top_k", b"9" * 900_000)),
            422,
        ),
        "an unknown field": ("/predict", _form(image, _part("extra", b"1")), 422),
        "a 900 KB file name": (
            "/predict",
            _form(_part("image", random_image(0), "a" * 900_000 + ".jpg")),
            400,  # python-multipart bounds a part's headers
        ),
        "a 900 KB part header": (
            "/predict",
            _form(image, b"--" + BOUNDARY.encode() + b"\r\nX-Junk: " + b"j" * 900_000 + b"\r\n"),
            400,
        ),
        "a field over the limit": ("/predict", _form(image, _part("model", b"m" * LIMIT)), 413),
    }
    async with client_for(upload_settings) as client:
        await _warm(client)
        answers = {
            name: await _timed_post(client, path, body) for name, (path, body, _) in cases.items()
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
    form = _image_form(random_image(0))
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
        gz, seconds = await _timed_post(
            client, "/predict", gzip.compress(form * 2000), **{"Content-Encoding": "gzip"}
        )
        # A chunked body many times the limit, dribbled in: cut off at the limit.
        chunked, _ = await _timed_post(client, "/predict", _chunks(form + bytes(8 * LIMIT)))
        # A multipart body under another content type, and the other way round.
        as_json, _ = await _timed_post(client, "/predict", form, "application/json")
        no_boundary, _ = await _timed_post(client, "/predict", form, "multipart/form-data")
    assert gz.status_code == 400 and seconds < 2
    assert chunked.status_code == 413
    assert as_json.status_code == 400 and no_boundary.status_code == 400


async def test_memory_stays_flat_under_hostile_uploads(
    upload_settings: Settings, client_for: ClientFactory
) -> None:
    image = _part("image", random_image(0), "a.jpg")
    endless = _part("image", b"", "a.jpg")[:-2] + bytes(4 * LIMIT)  # a part that never ends
    hostile: list[tuple[str, Callable[[], Any]]] = [
        ("/predict", lambda: _chunks(endless)),  # chunked, no Content-Length
        ("/predict/batch", lambda: _many_parts(5000, "image")),
        ("/predict", lambda: _form(image, _part("model", b"m" * (LIMIT - 4096)))),
        ("/predict", lambda: _image_form(NOT_IMAGES["gzip bomb"])),
        ("/predict", lambda: _image_form(_jpeg_claiming(65500, 65500))),
        ("/predict", lambda: _image_form(_truncations()["70%"])),
    ]
    process = psutil.Process()

    async def one_round(client: httpx.AsyncClient) -> list[int]:
        codes = []
        for path, body in hostile:
            answer, _ = await _timed_post(client, path, body())
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


# --- 4. the event loop keeps answering during a slow upload (real uvicorn) -------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    root = tmp_path_factory.mktemp("server") / "data"
    root.mkdir()
    folder = root.parent
    env = service_env(root, TINYRES_MAX_UPLOAD_BYTES=str(LIMIT))
    with api_process(env, log=folder / "api.log") as base:
        host, port = base.removeprefix("http://").split(":")
        yield host, int(port)


def _read_status(sock: socket.socket) -> int:
    sock.settimeout(10)
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    match = re.match(rb"HTTP/1\.1 (\d{3})", data)
    assert match, data[:200]
    return int(match.group(1))


@pytest.mark.slow
def test_health_answers_while_uploads_crawl_in(server: tuple[str, int]) -> None:
    host, port = server
    stop = threading.Event()
    statuses: list[int] = []

    def slow_upload() -> None:
        with socket.create_connection((host, port)) as sock:
            sock.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                + f"Content-Type: {MULTIPART}\r\n\r\n".encode()
            )
            head = _part("image", b"", "a.jpg")[:-2]  # the part stays open
            sock.sendall(f"{len(head):x}\r\n".encode() + head + b"\r\n")
            while not stop.is_set():
                sock.sendall(b"10\r\n" + b"\xff" * 16 + b"\r\n")
                time.sleep(0.05)
            # Then all at once: far over the limit.
            chunk = bytes(256 * 1024)
            try:
                for _ in range(8):
                    sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except OSError:
                pass  # the server may answer and close before reading it all
            statuses.append(_read_status(sock))

    def slow_headers() -> None:  # slowloris: headers a line at a time, never finished
        with socket.create_connection((host, port)) as sock:
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
            while not stop.is_set():
                sock.sendall(b"X-Slow: 1\r\n")
                time.sleep(0.05)

    threads = [threading.Thread(target=f, daemon=True) for f in (slow_upload, slow_headers)]
    for thread in threads:
        thread.start()
    latencies = []
    try:
        time.sleep(0.3)  # both are under way
        with httpx.Client(base_url=f"http://{host}:{port}", timeout=5) as http:
            for _ in range(10):
                start = time.perf_counter()
                assert http.get("/healthz").status_code == 200
                latencies.append(time.perf_counter() - start)
                time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
    assert max(latencies) < 0.5, latencies
    assert statuses == [413]


@pytest.mark.slow
def test_raw_traversal_targets_on_the_real_server(server: tuple[str, int]) -> None:
    targets = [
        b"/../../etc/passwd",
        b"/datasets/../../../etc/passwd",
        b"/datasets/..%2f..%2f..%2fetc%2fpasswd",
        b"/datasets/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        b"/datasets/%2e%2e",
        b"/datasets/a%00b",
        b"/jobs/..%2f..%2ftinyres.sqlite",
        b"/jobs/%2e%2e%2ftinyres.sqlite/history.png",
        b"/models/" + b"x" * 4000,
    ]
    for target in targets:
        with socket.create_connection(server, timeout=5) as sock:
            sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            status = _read_status(sock)
        assert 400 <= status < 500, (target, status)


@pytest.mark.slow
def test_bad_content_lengths_on_the_real_server(server: tuple[str, int]) -> None:
    for declared in (b"-1", b"abc", b"1e3", b"0x10", b"12, 13", b"1" * 30):
        with socket.create_connection(server, timeout=5) as sock:
            sock.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: "
                + MULTIPART.encode()
                + b"\r\nContent-Length: "
                + declared
                + b"\r\n\r\n"
                + _image_form(b"x")
            )
            status = _read_status(sock)
        # h11 refuses each (400); a number that big may also be the app's 413.
        assert status in ((400, 413) if declared.isdigit() else (400,)), (declared, status)


# --- 5. the API key on every route -----------------------------------------------------

KEY = "k3y-" + "s" * 28
# Open whatever the settings: probes, the schema and its documentation, metrics scraping.
PUBLIC = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
}
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


def _routes(app: FastAPI) -> list[Any]:
    """Every route of the app, those of included routers too, with their full paths
    (this FastAPI keeps included routers nested in `app.routes`)."""
    return list(iter_route_contexts(app.routes))


def _operations(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) the app routes, HEAD and OPTIONS aside."""
    operations = []
    for route in _routes(app):
        for method in sorted((route.methods or set()) - {"HEAD", "OPTIONS"}):
            operations.append((method, route.path))
    # Nothing the schema documents is missed.
    documented = {
        (method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item
    }
    assert documented <= set(operations), documented - set(operations)
    return operations


def _needs_key(method: str, path: str, *, key: bool, reads: bool) -> bool:
    if not key or path in PUBLIC:
        return False
    if method in MUTATING and not path.startswith("/predict"):
        return True  # the contract: every mutating request
    return reads  # GETs and /predict (which changes nothing): only with api_key_reads


@pytest.mark.parametrize(
    ("key", "reads"), [(True, False), (True, True), (False, True), (False, False)]
)
def test_api_key_on_every_route(
    data_root: Path, monkeypatch: pytest.MonkeyPatch, key: bool, reads: bool
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real_compare = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real_compare(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    settings = Settings(data_root=data_root, api_key=KEY if key else None, api_key_reads=reads)
    app = create_app(settings)
    operations = _operations(app)
    assert ("POST", "/jobs/shard") in operations and ("GET", "/healthz") in operations
    refused: dict[tuple[str, str], list[int]] = {}
    with TestClient(app) as client:
        for method, path in operations:
            url = re.sub(r"\{[^}]+\}", "nope", path)
            codes = []
            for header in (None, "", "wrong", KEY[:-1], KEY + "x", KEY.upper(), KEY):
                headers = {} if header is None else {"X-API-Key": header}
                answer = client.request(method, url, headers=headers, json={})
                codes.append(answer.status_code)
                if answer.status_code == 401:
                    assert answer.headers["WWW-Authenticate"] == "X-API-Key"
                    assert answer.json() == {"detail": "missing or wrong X-API-Key header"}
            refused[(method, path)] = codes
        jobs = client.get("/jobs", headers={"X-API-Key": KEY}).json()
    for (method, path), codes in refused.items():
        if _needs_key(method, path, key=key, reads=reads):
            assert codes[:-1] == [401] * 6, (method, path, codes)
            assert codes[-1] != 401, (method, path, codes)
        else:
            assert 401 not in codes, (method, path, codes)
    assert jobs == {"jobs": []}  # nothing refused (or given "{}") created a job
    if key:
        # Each check that got a header compared it in constant time, as bytes.
        assert compared and all(b == KEY.encode() for _, b in compared)
    else:
        assert compared == []


def test_mutating_routes_declare_the_key_in_the_schema(data_root: Path) -> None:
    app = create_app(Settings(data_root=data_root))
    schema = app.openapi()
    assert schema["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": schema["components"]["securitySchemes"]["ApiKey"]["description"],
    }
    for route in _routes(app):
        if not isinstance(route.original_route, APIRoute):
            continue
        for method in route.methods:
            operation = schema["paths"][route.path][method.lower()]
            if _needs_key(method, route.path, key=True, reads=False):
                assert operation.get("security") == [{"ApiKey": []}], (method, route.path)
                assert "401" in operation["responses"], (method, route.path)


def test_api_key_reads_comes_from_the_environment(
    data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TINYRES_API_KEY", KEY)
    monkeypatch.setenv("TINYRES_API_KEY_READS", "true")
    settings = Settings(data_root=data_root)
    assert settings.api_key == KEY and settings.api_key_reads is True
    monkeypatch.delenv("TINYRES_API_KEY_READS")
    assert Settings(data_root=data_root).api_key_reads is False


def test_read_key_comes_before_the_body_is_read(data_root: Path) -> None:
    """A keyed /predict refuses an unauthenticated upload without reading it."""
    settings = Settings(data_root=data_root, api_key=KEY, api_key_reads=True)
    received = 0

    def body() -> Iterator[bytes]:
        nonlocal received
        for _ in range(64):
            received += 1
            yield bytes(64 * 1024)

    with TestClient(create_app(settings)) as client:
        answer = client.post("/predict", content=body(), headers={"Content-Type": MULTIPART})
    assert answer.status_code == 401
    assert received <= 1

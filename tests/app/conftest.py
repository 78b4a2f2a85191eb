"""Fixtures for the API tests: tiny saved models registered as succeeded train jobs, test
images, and an HTTP client on an app whose lifespan runs."""

from __future__ import annotations

import io
import shutil
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from core import layout
from core.config import Settings
from core.jobs import JobState, JobStore

CLASSES = 3
TINY: dict[str, Any] = {"width": 8, "levels": [1, 1]}


def class_names(count: int, prefix: str = "class") -> list[dict[str, Any]]:
    return [{"index": i, "wnid": f"n{i:08d}", "label": f"{prefix} {i}"} for i in range(count)]


def build_model_file(path: Path, classes: int, seed: int, prefix: str = "class") -> Path:
    """Saves a tiny Resnet with random (not initial) weights, so inputs give distinct outputs."""
    from core.architecture import ArchitectureConfig
    from model import build_resnet

    network = build_resnet(
        classes, ArchitectureConfig(**TINY), class_names=class_names(classes, prefix)
    )
    rng = np.random.default_rng(seed)
    for variable in network.weights:
        if variable.path.endswith("moving_variance"):
            values = rng.uniform(0.5, 2.0, variable.shape)
        else:
            values = rng.normal(0.0, 0.3, variable.shape)
        variable.assign(values.astype(variable.dtype))
    network.save(path)
    return path


@pytest.fixture(scope="session")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 3-class model, built once per session (the tests copy the file)."""
    return build_model_file(tmp_path_factory.mktemp("models") / "tiny.keras", CLASSES, seed=1)


@pytest.fixture(scope="session")
def other_model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny model with other weights and labels."""
    folder = tmp_path_factory.mktemp("models")
    return build_model_file(folder / "other.keras", 4, seed=2, prefix="other")


def register_model(settings: Settings, source: Path) -> str:
    """Files `source` as the model of a new succeeded train job; returns the model id."""
    store = JobStore(settings.effective_database_url)
    try:
        store.create_schema()
        job = store.create("train", {"dataset": "tiny", **TINY, "epochs": 1})
        path = layout.model_path(settings, job.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, path)
        store.finish(job.id, JobState.SUCCEEDED, result={"model": job.id})
    finally:
        store.engine.dispose()
    return job.id


def encode(pixels: np.ndarray, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def random_image(seed: int, size: tuple[int, int] = (64, 64), fmt: str = "JPEG") -> bytes:
    """An encoded image of random pixels, `size` = (width, height)."""
    rng = np.random.default_rng(seed)
    return encode(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), fmt)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(side: int = 20_000) -> bytes:
    """A valid 1-bit grayscale PNG of side x side pixels: a few tens of KB on the wire,
    hundreds of MB once decoded. Written by hand, so making it never decodes it either."""
    row = bytes(1 + (side + 7) // 8)  # filter byte 0, then all-black pixels
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


ClientFactory = Callable[[Settings], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def client_for() -> ClientFactory:
    """`async with client_for(settings) as client`: real HTTP requests against the app, its
    lifespan (job store, model cache, predictor) running."""

    @asynccontextmanager
    async def factory(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
        from app.main import create_app

        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://tinyres") as client:
                yield client

    return factory


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder next to the data root, with things worth stealing."""
    from tests.app.hostile import manifest_json

    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("secret")
    (folder / "manifest.json").write_text(manifest_json("stolen"))
    (folder / "images").mkdir()
    (folder / "images" / "a.jpg").write_bytes(random_image(0))
    return folder


@pytest.fixture
def trapped_root(data_root: Path, outside: Path) -> Path:
    """The data root, with symlinks out of it where a client could name them."""
    from tests.app.hostile import manifest_json

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
    (datasets / "good" / "manifest.json").write_text(manifest_json("good"))
    (datasets / "bad.name").mkdir()  # a folder no client could have named
    (datasets / "bad.name" / "manifest.json").write_text(manifest_json("bad.name"))
    (datasets / "broken").mkdir()
    (datasets / "broken" / "manifest.json").write_text("{not json")
    return data_root


@pytest.fixture
def upload_settings(data_root: Path, model_file: Path) -> Settings:
    from tests.app.hostile import LIMIT

    settings = Settings(data_root=data_root, max_upload_bytes=LIMIT, max_image_pixels=4096 * 4096)
    register_model(settings, model_file)
    return settings

"""The dashboard's routes in process (no browser): the page, its files, and /docs and
/redoc pointing at the vendored assets only."""

from __future__ import annotations

import gzip
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import httpx
import pytest

from app.dashboard.assets import static_assets
from core.config import Settings

pytestmark = pytest.mark.anyio
ClientFactory = Callable[[Settings], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def client_for() -> ClientFactory:
    """Real HTTP requests against the app in process, its lifespan running."""

    @asynccontextmanager
    async def factory(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
        from app.main import create_app

        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://tinyres") as client:
                yield client

    return factory


VENDORED = ("tus-js-client", "swagger-ui-dist", "redoc")


async def test_root_serves_the_dashboard(tmp_path: Path, client_for: ClientFactory) -> None:
    async with client_for(Settings(data_root=tmp_path)) as client:
        answer = await client.get("/")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/html")
        assert 'src="dashboard/static/js/main.js"' in answer.text
        again = await client.get("/", headers={"If-None-Match": answer.headers["etag"]})
        assert again.status_code == 304


async def test_every_file_the_page_names_is_served(
    tmp_path: Path, client_for: ClientFactory
) -> None:
    async with client_for(Settings(data_root=tmp_path)) as client:
        page = (await client.get("/")).text
        for name in re.findall(r'(?:src|href)="(dashboard/static/[^"]+)"', page):
            assert (await client.get(f"/{name}")).status_code == 200, name
        script = await client.get("/dashboard/static/js/main.js")
        assert script.headers["content-type"].startswith("text/javascript")


async def test_unknown_or_climbing_paths_are_404(tmp_path: Path, client_for: ClientFactory) -> None:
    async with client_for(Settings(data_root=tmp_path)) as client:
        for path in ("nope.js", "../assets.py", "..%2F..%2Fpyproject.toml", "js/../../routes.py"):
            answer = await client.get(f"/dashboard/static/{path}")
            assert answer.status_code == 404, path
            assert "detail" in answer.json()


async def test_big_files_are_sent_compressed(tmp_path: Path, client_for: ClientFactory) -> None:
    path = "/dashboard/static/vendor/swagger-ui-dist/swagger-ui-bundle.js"
    async with client_for(Settings(data_root=tmp_path)) as client:
        answer = await client.get(path, headers={"Accept-Encoding": "gzip"})
        assert answer.headers["content-encoding"] == "gzip"
        assert int(answer.headers["content-length"]) < len(answer.content) / 2
        assert "max-age" in answer.headers["cache-control"]
    assert gzip.decompress(static_assets()[path.split("static/", 1)[1]].gzipped or b"")


async def test_docs_and_redoc_use_only_vendored_assets(
    tmp_path: Path, client_for: ClientFactory
) -> None:
    async with client_for(Settings(data_root=tmp_path)) as client:
        for path in ("/docs", "/redoc"):
            page = (await client.get(path)).text
            assets = re.findall(r'(?:src|href)="([^"]+)"', page)
            assert assets, path
            for asset in assets:
                assert asset.startswith("/dashboard/static/vendor/"), (path, asset)
                assert (await client.get(asset)).status_code == 200
            assert "http://" not in page and "https://" not in page, path
        assert (await client.get("/docs/oauth2-redirect")).status_code == 200
        schema = (await client.get("/openapi.json")).json()
        assert "/" in schema["paths"]


def test_each_vendored_library_has_its_version_and_licence() -> None:
    assets = static_assets()
    for name in VENDORED:
        assert f"vendor/{name}/LICENSE" in assets
        version = assets[f"vendor/{name}/VERSION"].body.decode()
        assert version.startswith(f"{name}@"), version


async def test_the_page_may_load_nothing_from_another_host(
    tmp_path: Path, client_for: ClientFactory
) -> None:
    async with client_for(Settings(data_root=tmp_path)) as client:
        policy = (await client.get("/")).headers["content-security-policy"]
    assert "default-src 'self'" in policy

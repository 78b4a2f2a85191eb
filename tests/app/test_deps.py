"""The API key (app.api.deps) on every route, read key and mutating key alike."""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from app.main import create_app
from core.config import Settings
from tests.app.hostile import MULTIPART

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
    # The dashboard's page and assets: its script asks for the key and sends it.
    "/",
}
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
# Endpoints that stream until the client goes away (a job id of "nope" ends the others).
ENDLESS = {"/events"}


def _routes(app: FastAPI) -> list[Any]:
    """Every route of the app, those of included routers too, with their full paths
    (this FastAPI keeps included routers nested in `app.routes`)."""
    return list(iter_route_contexts(app.routes))


def _operations(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) the app routes, HEAD and OPTIONS aside."""
    operations = []
    routed = set()
    for route in _routes(app):
        for method in sorted(route.methods or set()):
            # The schema writes a `{path:path}` parameter as `{path}`.
            routed.add((method, re.sub(r":\w+}", "}", route.path)))
            if method not in {"HEAD", "OPTIONS"}:
                operations.append((method, route.path))
    # Nothing the schema documents is missed.
    documented = {
        (method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item
    }
    assert documented <= routed, documented - routed
    return operations


def _needs_key(method: str, path: str, *, key: bool, reads: bool) -> bool:
    if not key or path in PUBLIC or path.startswith("/dashboard/"):
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
            headers_tried = (None, "", "wrong", KEY[:-1], KEY + "x", KEY.upper(), KEY)
            if path in ENDLESS:
                # Once let in, it streams until the client stops: only refusals are tried.
                if not _needs_key(method, path, key=key, reads=reads):
                    continue
                headers_tried = headers_tried[:-1]
            for header in headers_tried:
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
            assert codes[:6] == [401] * 6, (method, path, codes)
            assert path in ENDLESS or codes[-1] != 401, (method, path, codes)
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
        if not route.original_route.include_in_schema:
            continue  # the documentation pages themselves
        for method in route.methods:
            operation = schema["paths"][re.sub(r":\w+}", "}", route.path)][method.lower()]
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

"""``GET /`` (the dashboard page) and ``GET /dashboard/static/{path}`` (its files)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException
from fastapi.responses import HTMLResponse, Response

from app.dashboard.assets import Asset, static_assets
from app.schemas import ErrorBody

router = APIRouter(tags=["dashboard"])

STATIC_PREFIX = "/dashboard/static"
# The dashboard may load nothing from another host (it must work offline): the browser
# enforces it. Inline styles: the widths of bars.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; "
    "object-src 'none'; base-uri 'self'; frame-ancestors 'self'"
)
_STATIC_TYPES = ("text/javascript", "text/css", "text/html", "image/png", "text/plain")
_STATIC_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {kind: {"schema": {"type": "string"}} for kind in _STATIC_TYPES}},
    304: {"description": "unchanged since the ETag sent in If-None-Match"},
    404: {"model": ErrorBody},
}


def _answer(asset: Asset, accept_encoding: str | None, if_none_match: str | None) -> Response:
    cache = "public, max-age=86400" if asset.immutable else "no-cache"
    headers = {"ETag": asset.etag, "Cache-Control": cache, "Vary": "Accept-Encoding"}
    if if_none_match is not None and asset.etag in if_none_match:
        return Response(status_code=304, headers=headers)
    if asset.gzipped is not None and "gzip" in (accept_encoding or ""):
        headers["Content-Encoding"] = "gzip"
        return Response(asset.gzipped, media_type=asset.media_type, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


@router.get("/", response_class=HTMLResponse, responses={304: {"description": "unchanged"}})
async def dashboard(
    accept_encoding: Annotated[str | None, Header()] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The web dashboard (one HTML page; its scripts use the public API only)."""
    answer = _answer(static_assets()["index.html"], accept_encoding, if_none_match)
    answer.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return answer


@router.get(f"{STATIC_PREFIX}/{{path:path}}", responses=_STATIC_RESPONSES)
async def dashboard_file(
    path: str,
    accept_encoding: Annotated[str | None, Header()] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """A file of the dashboard: its scripts, styles, and the vendored libraries (each
    with its VERSION and LICENSE, see docs/DASHBOARD.md)."""
    asset = static_assets().get(path)
    if asset is None:
        raise HTTPException(404, detail=f"no dashboard file {path[:80]!r}")
    return _answer(asset, accept_encoding, if_none_match)

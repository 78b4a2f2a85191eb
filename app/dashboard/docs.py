"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) from the vendored copies in the package,
not from a CDN: both work on a machine without internet."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse

from app.dashboard.routes import STATIC_PREFIX

router = APIRouter(include_in_schema=False)

_VENDOR = f"{STATIC_PREFIX}/vendor"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"  # where FastAPI's own /docs had it


def _openapi_url(request: Request) -> str:
    return request.app.openapi_url or "/openapi.json"


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{_VENDOR}/swagger-ui-dist/swagger-ui-bundle.js",
        swagger_css_url=f"{_VENDOR}/swagger-ui-dist/swagger-ui.css",
        swagger_favicon_url=f"{_VENDOR}/swagger-ui-dist/favicon-32x32.png",
        oauth2_redirect_url=OAUTH2_REDIRECT,
        # No badge fetched from validator.swagger.io.
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get(OAUTH2_REDIRECT)
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{_VENDOR}/redoc/redoc.standalone.js",
        redoc_favicon_url=f"{_VENDOR}/swagger-ui-dist/favicon-32x32.png",
        with_google_fonts=False,
    )

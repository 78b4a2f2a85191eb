"""Helpers of the browser tests: Chromium (Debian's, driven by playwright), axe-core,
screenshots, and watching where a page's requests go."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

CHROMIUM = Path(os.environ.get("TINYRES_CHROMIUM", "/usr/bin/chromium"))
AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
DOC_SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
WIDE = {"width": 1280, "height": 800}
NARROW = {"width": 390, "height": 844}


def require_chromium() -> Path:
    """Debian's Chromium and the playwright package, or a skip (a failure under CI=true)."""
    reason = None
    if not CHROMIUM.exists():
        reason = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "the playwright package is not installed (pip install -e '.[dev]')"
    if reason is None:
        return CHROMIUM
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the browser tests: {reason}")
    pytest.skip(reason)


class RequestLog:
    """Every request a page made, and how many bytes each response took on the wire."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.sizes: dict[str, int] = {}

    def attach(self, page: Any) -> None:
        page.on("request", lambda request: self.urls.append(request.url))
        page.on("requestfinished", self._finished)

    def _finished(self, request: Any) -> None:
        try:
            sizes = request.sizes()
        except Exception:  # the page went away first
            return
        self.sizes[request.url] = sizes["responseBodySize"] + sizes["responseHeadersSize"]

    def foreign(self) -> list[str]:
        """Requests that left this machine (anything but 127.0.0.1, data: and blob: URLs)."""
        return [
            url
            for url in self.urls
            if urlparse(url).scheme not in ("data", "blob")
            and urlparse(url).hostname not in ("127.0.0.1", "localhost")
        ]

    def total_bytes(self) -> int:
        return sum(self.sizes.values())

    def clear(self) -> None:
        self.urls.clear()
        self.sizes.clear()


def critical_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's violations of impact "critical" on the page as it is now."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        # Served as if by the page's own host: the dashboard's Content-Security-Policy
        # (scripts from 'self' only) stays on while axe runs.
        origin = "/".join(page.url.split("/", 3)[:3])
        page.route(f"{origin}/__test__/axe.min.js", _serve_axe)
        page.add_script_tag(url=f"{origin}/__test__/axe.min.js")
    result = page.evaluate("async () => (await axe.run(document)).violations")
    return [
        {"id": v["id"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result
        if v["impact"] == "critical"
    ]


def _serve_axe(route: Any) -> None:
    route.fulfill(body=AXE.read_bytes(), content_type="text/javascript")


def serious_violations(page: Any) -> list[str]:
    result = page.evaluate("async () => (await axe.run(document)).violations")
    return [v["id"] for v in result if v["impact"] == "serious"]


def screenshot(page: Any, folder: Path, name: str, *, for_docs: bool = False) -> Path:
    """A full-page PNG under `folder` (the test artifacts); with `for_docs` and
    TINYRES_DOC_SCREENSHOTS=1, also a small one (half size, 64 colours) in docs/screenshots."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if for_docs and os.environ.get("TINYRES_DOC_SCREENSHOTS") == "1":
        from PIL import Image

        DOC_SHOTS.mkdir(parents=True, exist_ok=True)
        view = folder / f"{name}-view.png"
        page.screenshot(path=str(view))
        with Image.open(view) as image:
            small = image.convert("RGB").resize((image.width // 2, image.height // 2))
            small.quantize(64).save(DOC_SHOTS / f"{name}.png", optimize=True)
    return path


def artifacts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TINYRES_SCREENSHOTS when set (CI keeps it), else a folder under pytest's tmp dir."""
    chosen = os.environ.get("TINYRES_SCREENSHOTS")
    if chosen:
        folder = Path(chosen)
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return tmp_path_factory.mktemp("screenshots")


@contextmanager
def chromium(executable: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(executable), args=["--disable-dev-shm-usage"]
        )
        try:
            yield browser
        finally:
            browser.close()

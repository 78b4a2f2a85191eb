"""/docs (Swagger UI) and /redoc render in the browser from the package's own copies: no
request leaves 127.0.0.1. Also: how many bytes their first load takes (reported)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.dashboard.browser import RequestLog, require_chromium
from tests.utils.services import api_process, service_env

pytestmark = [pytest.mark.browser]


@pytest.fixture(scope="module")
def api_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_chromium()
    folder = tmp_path_factory.mktemp("docs")
    with api_process(service_env(folder / "data"), log=folder / "api.log") as base:
        yield base


def test_swagger_ui_renders_offline(
    api_only: str, page: Any, requests_log: RequestLog, record_property: Any
) -> None:
    page.goto(f"{api_only}/docs")
    page.locator(".swagger-ui .opblock-summary-path", has_text="/jobs/train").first.wait_for()
    page.locator(".swagger-ui .opblock-tag", has_text="dashboard").wait_for()
    assert requests_log.foreign() == []
    record_property("docs_first_load_bytes", requests_log.total_bytes())


def test_redoc_renders_offline(
    api_only: str, page: Any, requests_log: RequestLog, record_property: Any
) -> None:
    page.goto(f"{api_only}/redoc")
    page.get_by_text("Train (or resume training) a ResNet on a dataset.").first.wait_for()
    assert requests_log.foreign() == []
    record_property("redoc_first_load_bytes", requests_log.total_bytes())

"""With TINYRES_API_KEY set: the dashboard asks for the key once per browser session, says
"wrong key" for a wrong one, sends the right one as X-API-Key, and stays live (its event
streams are read with fetch() then, since EventSource cannot send the header)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dashboard.browser import require_chromium
from tests.dashboard.conftest import sharded_root
from tests.utils.services import api_process, service_env

pytestmark = [pytest.mark.browser, pytest.mark.slow]

KEY = "dashboard-secret"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API alone (no worker: jobs stay queued), with a key and reads that need it too."""
    require_chromium()
    folder = tmp_path_factory.mktemp("keyed")
    env = service_env(sharded_root(folder), TINYRES_API_KEY=KEY, TINYRES_API_KEY_READS="true")
    with api_process(env, log=folder / "api.log") as base:
        yield base


def test_the_key_is_asked_once_checked_and_sent(keyed: str, page: Any) -> None:
    page.goto(f"{keyed}/#/jobs")
    dialog = page.locator("#key-dialog")
    dialog.wait_for()
    page.fill("#key-input", "not-the-key")
    page.click("#key-submit")
    page.locator("#key-error").filter(has_text="wrong key").wait_for()
    assert dialog.is_visible()

    page.fill("#key-input", KEY)
    page.click("#key-submit")
    dialog.wait_for(state="hidden")
    page.wait_for_selector("main[data-ready=jobs]")
    assert page.evaluate("sessionStorage.getItem('tinyres.apiKey')") == KEY

    # Live with the key: a job made elsewhere appears without a reload.
    answer = httpx.post(
        f"{keyed}/jobs/shard",
        json={"source": "src", "dataset": "again"},
        headers={"X-API-Key": KEY},
    )
    assert answer.status_code == 202
    page.locator(f"tr[data-job='{answer.json()['id']}']").wait_for(timeout=15_000)

    # Asked once per session: a reload keeps the key and asks nothing.
    page.reload()
    page.wait_for_selector("main[data-ready=jobs]")
    page.wait_for_timeout(500)
    assert not dialog.is_visible()


def test_a_401_reads_wrong_key_not_a_broken_page(keyed: str, page: Any) -> None:
    page.goto(f"{keyed}/")
    page.evaluate(
        "sessionStorage.setItem('tinyres.apiKey', 'stale');"
        "sessionStorage.setItem('tinyres.keyChecked', '1')"
    )
    page.goto(f"{keyed}/#/datasets")
    page.reload()
    page.wait_for_selector("main[data-ready=datasets]")
    assert "wrong key" in page.inner_text("main")
    page.locator("#banner").filter(has_text="wrong key").wait_for()
    assert page.locator("#key-dialog").is_visible()
    assert page.locator("main h1").inner_text() == "Datasets"


def test_a_page_without_key_prompt_when_none_is_needed(
    tmp_path: Path, page: Any, service: tuple[str, Path]
) -> None:
    base, _ = service
    page.goto(f"{base}/#/jobs")
    page.wait_for_selector("main[data-ready=jobs]")
    page.wait_for_timeout(500)
    assert not page.locator("#key-dialog").is_visible()

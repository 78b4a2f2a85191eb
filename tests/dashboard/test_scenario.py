"""A user's afternoon in the dashboard, in Debian's Chromium, against a real API and a real
worker: upload an archive (watching the bar, pausing, reloading, resuming) and shard it;
start a train job from the form (an invalid width first: the message is at the field);
watch its progress bar and curves move without a reload; cancel a second job; open the
model's evaluation (asking for it with the page's button if the train job made none),
sort its per-class table by F1 from the keyboard; export ONNX and download it; classify an
image from disk. Then every page at 1280x800 and 390 px wide: axe-core finds no critical
violation, nothing overflows, and a screenshot is kept.

The steps share one service and run in order (each needs what the one before made).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from core import layout
from core.config import Settings
from tests.dashboard.browser import NARROW, WIDE, RequestLog, critical_violations, screenshot
from tests.utils.datasets import digit_image, encode, make_class_folders, zip_dir
from tests.utils.services import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

FIRST_LOAD_LIMIT = 300_000  # bytes on the wire, per page
STATE: dict[str, str] = {}  # what a step made, for the next ones

# Collects every aria-valuenow of the page's main progress bar and the number of points
# of the loss curve, as they change (no polling: a MutationObserver).
WATCH = """
window.__seen = {progress: [], points: []};
new MutationObserver(() => {
  const bar = document.querySelector('main [role=progressbar]');
  if (bar) window.__seen.progress.push(Number(bar.getAttribute('aria-valuenow')));
  const line = document.querySelector('polyline[data-series=loss]');
  if (line) window.__seen.points.push(Number(line.dataset.points));
}).observe(document.body, {subtree: true, childList: true, attributes: true});
window.__sameDocument = true;
"""


def goto(page: Any, base: str, route: str) -> None:
    page.goto(f"{base}/{route}")
    page.wait_for_selector("main[data-ready]")


def status_has(page: Any, selector: str, text: str, timeout: float = 60_000) -> None:
    page.locator(selector).filter(has_text=text).wait_for(timeout=timeout)


def test_upload_with_a_bar_resume_after_reload_and_shard(
    service: tuple[str, Path], page: Any, tmp_path: Path
) -> None:
    base, _ = service
    archive = zip_dir(make_class_folders(tmp_path / "pets", per_class=8), tmp_path / "pets.zip")
    page.add_init_script("localStorage.setItem('tinyres.uploadChunkBytes', '4096')")

    offsets: list[int] = []

    def slow_patch(route: Any) -> None:
        if route.request.method == "PATCH":
            offsets.append(int(route.request.headers["upload-offset"]))
            page.wait_for_timeout(150)
        route.continue_()

    page.route(re.compile(r".*/uploads/.*"), slow_patch)
    goto(page, base, "#/upload")
    page.set_input_files("#upload-file", str(archive))
    assert page.input_value("#upload-name") == "pets"
    page.click("#upload-start")
    bar = page.locator("main [role=progressbar]")
    page.wait_for_function(
        "() => Number(document.querySelector('main [role=progressbar]')"
        ".getAttribute('aria-valuenow')) > 0"
    )
    page.click("#upload-pause")
    paused_at = int(bar.get_attribute("aria-valuenow") or 0)
    assert 0 < paused_at < 100

    offsets.clear()
    page.reload()
    page.wait_for_selector("main[data-ready]")
    page.evaluate(WATCH)
    page.set_input_files("#upload-file", str(archive))
    page.click("#upload-start")
    status_has(page, "#upload-resumed", "Resuming")
    status_has(page, "#upload-status", "Uploaded: the source uploads/pets.zip")
    assert offsets[0] > 0, "the upload started again from byte 0 after the reload"
    seen = [v for v in page.evaluate("window.__seen.progress") if v > 0]
    assert min(seen) >= paused_at - 1, seen
    assert any(paused_at < v < 100 for v in seen) and seen[-1] == 100, seen

    assert page.input_value("#shard-source") == "uploads/pets.zip"
    page.fill("#shard-dataset", "pets")
    page.fill("#shard-num_shards", "2")
    page.click("#shard-submit")
    page.click("#shard-job-link")
    status_has(page, "#job-status", "succeeded")
    goto(page, base, "#/datasets/pets")
    assert page.locator("main table").first.is_visible()
    page.wait_for_function("() => document.querySelector('#dataset-preview')?.naturalWidth > 0")
    assert "not an image" in page.inner_text("main") or page.locator("main tbody tr").count()


def test_train_form_shows_the_api_message_at_the_field_then_trains_live(
    service: tuple[str, Path], page: Any
) -> None:
    base, _ = service
    goto(page, base, "#/train")
    page.select_option("#train-dataset", "digits")
    page.fill("#train-width", "2")
    page.click("#train-submit")
    error = page.locator("#train-width-error")
    error.filter(has_text="greater than or equal to 4").wait_for()
    assert page.get_attribute("#train-width", "aria-invalid") == "true"
    assert page.locator("#train-epochs-error").inner_text() == ""

    page.fill("#train-width", "8")
    page.fill("#train-levels", "1,1")
    page.fill("#train-epochs", "5")
    page.fill("#train-batch_size", "8")
    page.fill("#train-l2", "0.0001")
    page.click("#train-submit")
    page.wait_for_url(re.compile(r".*#/jobs/[A-Za-z0-9_-]+$"))
    job_id = page.url.rsplit("/", 1)[1]
    page.wait_for_selector("main[data-ready]")
    page.evaluate(WATCH)
    status_has(page, "#job-status", "succeeded", timeout=240_000)
    seen = page.evaluate("window.__seen")
    assert page.evaluate("window.__sameDocument"), "the page was reloaded"
    assert any(0 < v < 100 for v in seen["progress"]), seen["progress"]
    assert seen["progress"][-1] == 100
    assert len(set(seen["points"])) >= 2 and max(seen["points"]) == 5, seen["points"]
    assert "epoch 5/5" in page.inner_text("#job-progress-text")
    assert "val_accuracy" in page.inner_text("#job-metrics")
    page.locator("#job-log").filter(has_text=re.compile(r"\S")).wait_for()
    STATE["model"] = job_id


def test_cancel_a_second_job(service: tuple[str, Path], page: Any) -> None:
    base, _ = service
    goto(page, base, "#/train?dataset=digits")
    page.fill("#train-width", "8")
    page.fill("#train-levels", "1,1")
    page.fill("#train-epochs", "500")
    page.fill("#train-batch_size", "8")
    page.click("#train-submit")
    page.wait_for_url(re.compile(r".*#/jobs/[A-Za-z0-9_-]+$"))
    page.wait_for_selector("#cancel-job")
    status_has(page, "#job-status", "running")
    page.click("#cancel-job")
    status_has(page, "#job-status", "cancelled", timeout=60_000)
    assert page.locator("#cancel-job").count() == 0
    STATE["cancelled"] = page.url.rsplit("/", 1)[1]


def test_the_jobs_page_is_live(service: tuple[str, Path], page: Any) -> None:
    base, _ = service
    goto(page, base, "#/jobs")
    rows = page.locator("#jobs-table tbody tr")
    before = rows.count()
    assert before >= 3
    body = {"source": "uploads/pets.zip", "dataset": "pets2"}
    answer = httpx.post(f"{base}/jobs/shard", json=body)
    assert answer.status_code == 202
    page.locator(f"tr[data-job='{answer.json()['id']}']").wait_for(timeout=15_000)
    page.select_option("#filter-state", "cancelled")
    assert rows.count() == 1 and STATE["cancelled"] in rows.first.inner_text()


# Records whether a progress bar appeared under `selector` and its values (a MutationObserver).
WATCH_BAR = """
selector => {
  window.__bars = window.__bars || {};
  const seen = window.__bars[selector] = [];
  new MutationObserver(() => {
    const bar = document.querySelector(`${selector} [role=progressbar]`);
    if (bar) seen.push(Number(bar.getAttribute('aria-valuenow')));
  }).observe(document.body, {subtree: true, childList: true, attributes: true});
}
"""


def bar_values(page: Any, selector: str) -> list[float]:
    return page.evaluate("selector => window.__bars[selector]", selector)


def column(page: Any, selector: str) -> list[float]:
    values = page.locator(selector).evaluate_all("cells => cells.map(c => c.dataset.value)")
    return [float(v) for v in values]


def tab_to(page: Any, selector: str, presses: int = 10) -> None:
    """Press Tab until the element matching `selector` has the focus."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"Tab never reached {selector}")


def test_the_model_page_shows_its_evaluation(service: tuple[str, Path], page: Any) -> None:
    """The evaluation of the trained model: made by its train job, or else asked for with
    the page's button (a progress bar while the evaluate job runs); its figures are the
    API's; the per-class table sorts by F1 from the keyboard; the confusion image loads."""
    base, _ = service
    model = STATE["model"]
    goto(page, base, f"#/models/{model}")
    assert "val_accuracy" in page.inner_text("main")
    page.locator("#evaluation").filter(has_text=re.compile("not evaluated yet|top-1")).wait_for()
    if page.locator("#eval-top1").count() == 0:
        assert critical_violations(page) == [], "not evaluated yet"
        page.evaluate(WATCH_BAR, "#evaluation")
        page.get_by_role("button", name="Evaluate on val").focus()
        page.keyboard.press("Enter")
        page.locator("#eval-top1").wait_for(timeout=240_000)
        seen = bar_values(page, "#evaluation")
        assert seen and all(0 <= v <= 100 for v in seen), seen
    answer = httpx.get(f"{base}/models/{model}/evaluation")
    assert answer.status_code == 200, answer.text
    evaluation = answer.json()
    assert page.inner_text("#eval-top1") == f"{evaluation['top1']:.3f}"
    assert page.inner_text("#eval-top5") == f"{evaluation['top5']:.3f}"
    assert page.inner_text("#eval-macro-f1") == f"{evaluation['macro']['f1']:.3f}"
    assert page.locator("#per-class tbody tr").count() == len(evaluation["per_class"])

    f1_head = page.locator("#per-class th:has(button[data-sort=f1])")
    assert f1_head.get_attribute("aria-sort") == "descending"
    assert (
        column(page, "#per-class td[data-col=f1]")
        == sorted(c["f1"] for c in evaluation["per_class"])[::-1]
    )
    page.focus("#per-class button[data-sort=label]")
    page.keyboard.press("Enter")  # by class: F1 is no longer the sort column
    assert f1_head.get_attribute("aria-sort") is None
    tab_to(page, "#per-class button[data-sort=f1]")
    page.keyboard.press("Enter")
    assert f1_head.get_attribute("aria-sort") == "descending"
    f1 = column(page, "#per-class td[data-col=f1]")
    assert f1 == sorted(f1, reverse=True)
    page.keyboard.press("Space")
    assert f1_head.get_attribute("aria-sort") == "ascending"
    assert column(page, "#per-class td[data-col=f1]") == sorted(f1)

    page.wait_for_function("() => document.querySelector('#confusion')?.naturalWidth > 0")
    assert page.locator("#worst").count() == 1
    assert critical_violations(page) == [], "evaluated"


def test_a_model_without_an_evaluation_gets_one_from_its_page(
    service: tuple[str, Path], page: Any
) -> None:
    """A model trained before train jobs evaluated their model has no evaluation.json: its
    page says "not evaluated yet"; the "Evaluate on val" button (from the keyboard) starts
    an evaluate job, shows its progress bar, then the evaluation the job wrote."""
    base, root = service
    model = STATE["model"]
    settings = Settings(data_root=root)
    for path in (layout.evaluation_path(settings, model), layout.confusion_path(settings, model)):
        path.unlink(missing_ok=True)
    assert httpx.get(f"{base}/models/{model}/evaluation").status_code == 404
    goto(page, base, f"#/models/{model}")
    page.locator("#evaluation").filter(has_text="not evaluated yet").wait_for()
    assert critical_violations(page) == [], "not evaluated yet"
    page.evaluate(WATCH_BAR, "#evaluation")
    page.get_by_role("button", name="Evaluate on val").focus()
    page.keyboard.press("Enter")
    page.locator("#eval-top1").wait_for(timeout=240_000)
    seen = bar_values(page, "#evaluation")
    assert seen and all(0 <= v <= 100 for v in seen), seen
    evaluation = httpx.get(f"{base}/models/{model}/evaluation").json()
    assert page.inner_text("#eval-top1") == f"{evaluation['top1']:.3f}"
    page.wait_for_function("() => document.querySelector('#confusion')?.naturalWidth > 0")


def _has_path(base: str, path: str) -> bool:
    return path in httpx.get(f"{base}/openapi.json").json()["paths"]


def test_set_the_alias_prod(service: tuple[str, Path], page: Any) -> None:
    base, _ = service
    if not _has_path(base, "/aliases/{alias}"):
        pytest.skip("the API has no /aliases yet (issue: aliases); the page says so")
    goto(page, base, f"#/models/{STATE['model']}")
    page.fill("#alias-name", "prod")
    page.click("#alias-form button[type=submit]")
    page.locator("#aliases").filter(has_text="prod").wait_for()


def test_export_onnx_and_download_it(service: tuple[str, Path], page: Any) -> None:
    """Start an ONNX export from the page (by keyboard), watch its progress bar, find it
    in the list with its agreement, and download exactly the artifact the API serves."""
    base, _ = service
    model = STATE["model"]
    goto(page, base, f"#/models/{model}")
    options = page.locator("#export-format option").evaluate_all("os => os.map(o => o.value)")
    assert options == ["saved_model", "onnx", "litert"]
    page.select_option("#export-format", "onnx")
    page.evaluate(WATCH_BAR, "#export-progress")
    page.focus("#export-start")
    page.keyboard.press("Enter")
    row = page.locator("#exports-table tr[data-format=onnx]")
    row.wait_for(timeout=300_000)
    page.locator("#export-outcome").filter(has_text="onnx export is ready").wait_for()
    seen = bar_values(page, "#export-progress")
    assert seen and all(0 <= v <= 100 for v in seen), seen

    listed = httpx.get(f"{base}/models/{model}/exports").json()["exports"]
    onnx = next(e for e in listed if e["format"] == "onnx")
    agreement = float(row.locator("td[data-col=agreement]").get_attribute("data-value") or 0)
    assert agreement == onnx["agreement"] and agreement >= 0.99
    assert row.locator("td[data-col=agreement]").inner_text().startswith(f"{onnx['agreement']:.3f}")
    assert critical_violations(page) == [], "exported"

    with page.expect_download() as download:
        row.get_by_role("button", name="Download the onnx export").click()
    artifact = httpx.get(f"{base}/models/{model}/exports/onnx")
    assert artifact.status_code == 200
    assert download.value.suggested_filename == f"{model}.onnx"
    assert Path(download.value.path()).read_bytes() == artifact.content
    assert len(artifact.content) == onnx["bytes"]


def test_a_failed_export_shows_its_error(service: tuple[str, Path], page: Any) -> None:
    """An export job that fails (its model's dataset vanished while it waited behind a
    train job) ends with its `error` shown under the form."""
    base, root = service
    model = STATE["model"]
    manifest = layout.manifest_path(Settings(data_root=root), "digits")
    body = {"dataset": "digits", "width": 8, "levels": [1, 1], "epochs": 500, "batch_size": 8}
    busy = httpx.post(f"{base}/jobs/train", json=body).json()["id"]
    wait_for(lambda: httpx.get(f"{base}/jobs/{busy}").json()["state"] == "running", 120)
    goto(page, base, f"#/models/{model}")
    page.select_option("#export-format", "litert")
    page.click("#export-start")
    page.locator("#export-progress [role=progressbar]").wait_for()
    hidden = manifest.with_name(manifest.name + ".away")
    manifest.rename(hidden)
    try:
        assert httpx.post(f"{base}/jobs/{busy}/cancel").status_code == 202
        alert = page.locator("#export-progress [role=alert]")
        alert.filter(has_text="litert export failed").wait_for(timeout=120_000)
        assert "no longer exists" in alert.inner_text()
        assert page.locator("#export-start").is_enabled()
    finally:
        hidden.rename(manifest)


def test_classify_an_image_from_disk(service: tuple[str, Path], page: Any, tmp_path: Path) -> None:
    import numpy as np

    base, _ = service
    image = tmp_path / "seven.png"
    image.write_bytes(encode(digit_image(7, np.random.default_rng(0)), "PNG"))
    goto(page, base, "#/classify")
    page.select_option("#classify-model", STATE["model"])
    page.set_input_files("#classify-file", str(image))
    page.wait_for_function("() => document.querySelector('#classify-preview')?.naturalWidth > 0")
    page.click("#classify-submit")
    bars = page.locator("#predictions li")
    bars.first.wait_for()
    assert bars.count() == 5
    shares = [float(t.rstrip("%")) for t in page.locator("#predictions li .num").all_inner_texts()]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 100.5


def _pages() -> list[tuple[str, str]]:
    return [
        ("jobs", "#/jobs"),
        ("job", f"#/jobs/{STATE['model']}"),
        ("upload", "#/upload"),
        ("train", "#/train"),
        ("datasets", "#/datasets"),
        ("dataset", "#/datasets/pets"),
        ("models", "#/models"),
        ("model", f"#/models/{STATE['model']}"),
        ("classify", "#/classify"),
    ]


@pytest.mark.parametrize("width", ["wide", "narrow"])
def test_every_page_is_accessible_small_and_fits(
    service: tuple[str, Path], browser: Any, shots: Path, width: str
) -> None:
    base, _ = service
    viewport = WIDE if width == "wide" else NARROW
    for name, route in _pages():
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        log = RequestLog()
        log.attach(page)
        try:
            goto(page, base, route)
            page.wait_for_timeout(1000)  # images and streams (never idle: SSE stays open)
            assert not log.foreign(), (name, log.foreign())
            assert log.total_bytes() < FIRST_LOAD_LIMIT, (name, log.total_bytes(), log.sizes)
            with (shots / "first-load-bytes.txt").open("a") as sizes:
                sizes.write(f"{name}-{width}: {log.total_bytes()}\n")
            assert critical_violations(page) == [], name
            overflow = page.evaluate("document.documentElement.scrollWidth - innerWidth")
            assert overflow <= 1, f"{name} is {overflow} px wider than {viewport['width']} px"
            screenshot(page, shots, f"{name}-{width}", for_docs=True)
        finally:
            context.close()


def test_keyboard_only(service: tuple[str, Path], page: Any) -> None:
    """Tab to the nav, open the train page with Enter, fill the form and submit it, all
    by keys; the 422 message is announced at the field."""
    base, _ = service
    goto(page, base, "#/jobs")
    for _ in range(20):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "New train job":
            break
    page.keyboard.press("Enter")
    page.wait_for_selector("main[data-ready=train]")
    page.focus("#train-width")
    page.keyboard.type("3")
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "train-submit":
            break
    page.keyboard.press("Enter")
    page.locator("#train-width-error").filter(has_text="4").wait_for()
    assert page.evaluate("document.activeElement.id") == "train-width"

"""How fast the dashboard's jobs page becomes interactive with thousands of jobs.

Run from the repository root: ``python -m bench.dashboard_bench`` (``--jobs 2000``,
``--repeats 5``). Needs Debian's Chromium (``/usr/bin/chromium``) and ``playwright``.

Jobs are inserted directly through ``core.jobs.JobStore`` (train jobs with a few epochs of
history, in every state) into a fresh data root; a real API process (``python -m app``)
serves them. Headless Chromium opens ``/#/jobs`` in a fresh context (no cache) each time;
"interactive" is the moment the page has listed the jobs, drawn the first page of rows and
attached its handlers (``main[data-ready]``), measured from the start of navigation
(``performance.now()``). The same is measured with an empty store in the same run, as the
baseline. Target: under 1 s with 2,000 jobs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from bench.harness import Row, emit, logger, render_table, server, verdict
from core.jobs import JobState, JobStore

log = logger("dashboard_bench")
STATES = [JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED]


def fill_store(data_root: Path, count: int) -> None:
    data_root.mkdir(parents=True, exist_ok=True)
    store = JobStore(f"sqlite:///{data_root / 'jobs.sqlite'}")
    store.create_schema()
    params = {"dataset": "digits", "width": 8, "levels": [1, 1], "epochs": 5, "batch_size": 8}
    history = [
        {"epoch": e, "loss": 2.0 - e / 10, "accuracy": e / 10, "val_loss": 2.1, "val_accuracy": 0.1}
        for e in range(1, 6)
    ]
    try:
        for i in range(count):
            job = store.create("train", params)
            if i % 10 == 0:
                continue  # queued
            store.update_job(job.id, history=history, metrics=history[-1])
            store.finish(job.id, STATES[i % len(STATES)], result={"model": job.id})
    finally:
        store.engine.dispose()


def time_to_interactive(base: str, repeats: int) -> tuple[list[float], int]:
    from playwright.sync_api import sync_playwright

    times: list[float] = []
    rows = 0
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
        try:
            for _ in range(repeats + 1):  # the first run warms the server up
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                page = context.new_page()
                page.goto(f"{base}/#/jobs")
                page.wait_for_selector("main[data-ready=jobs]", timeout=60_000)
                times.append(page.evaluate("performance.now()") / 1000)
                rows = page.locator("#jobs-table tbody tr").count()
                context.close()
        finally:
            browser.close()
    return times[1:], rows


def measure(count: int, repeats: int, folder: Path) -> tuple[float, float, int]:
    root = folder / f"root-{count}"
    fill_store(root, count)
    env = {"TINYRES_DATABASE_URL": f"sqlite:///{root / 'jobs.sqlite'}"}
    with server(root, folder / f"api-{count}.log", **env) as (port, _):
        times, rows = time_to_interactive(f"http://127.0.0.1:{port}", repeats)
    log(f"{count} jobs: {[round(t, 3) for t in times]} s, {rows} rows drawn")
    return statistics.median(times), max(times), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        empty, empty_max, _ = measure(0, args.repeats, folder)
        full, full_max, rows = measure(args.jobs, args.repeats, folder)
    table = render_table(
        f"Dashboard jobs page: time to interactive in headless Chromium (median of "
        f"{args.repeats} fresh loads)",
        [
            Row(
                f"{args.jobs} jobs in the store ({rows} rows drawn)",
                f"{full:.3f} s (max {full_max:.3f})",
                f"{empty:.3f} s (empty store, max {empty_max:.3f})",
                full / empty,
                "under 1 s",
                verdict(full < 1.0),
            )
        ],
        [
            "from the start of navigation to `main[data-ready]`: jobs listed (GET /jobs), "
            "first page of rows drawn, GET /events open"
        ],
    )
    emit(table, args.out)


if __name__ == "__main__":
    main()

"""What the `tinyres` command prints: rich tables, and a job's live progress (a progress bar
on a terminal, plain lines when piped)."""

from __future__ import annotations

import json
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn
from rich.table import Table

console = Console()
errors = Console(stderr=True)
PLAIN_EVERY_SECONDS = 2.0


def print_json(value: Any) -> None:
    # Plain print: rich would wrap long lines, and piped JSON must parse.
    print(json.dumps(value, indent=2))


def _number(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return "" if value is None else str(value)


def models_table(models: list[dict[str, Any]]) -> None:
    """The models, with their final validation accuracy and their aliases."""
    rows = [
        {
            **model,
            "val_accuracy": (model.get("metrics") or {}).get("val_accuracy"),
            "aliases": ", ".join(model.get("aliases") or []),
        }
        for model in models
    ]
    table("models", rows, ["id", "dataset", "width", "epochs", "val_accuracy", "aliases"])


def table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
    view = Table(title=title)
    for column in columns:
        view.add_column(column)
    for row in rows:
        view.add_row(*(_number(row.get(column)) for column in columns))
    console.print(view)


def jobs_table(jobs: list[dict[str, Any]]) -> None:
    rows = [
        {
            **job,
            "progress": f"{100 * float(job.get('progress', {}).get('fraction', 0)):.0f}%",
            "created": str(job.get("created_at", ""))[:19],
        }
        for job in jobs
    ]
    table("jobs", rows, ["id", "kind", "state", "progress", "created", "error"])


def job_summary(job: dict[str, Any]) -> None:
    """A finished (or current) job: its state, progress and metrics."""
    console.print(f"job {job['id']} ({job['kind']}): [bold]{job['state']}[/bold]")
    if job.get("error"):
        console.print(f"error: {job['error']}")
    metrics = job.get("metrics") or {}
    if metrics:
        console.print("metrics: " + ", ".join(f"{k} {_number(v)}" for k, v in metrics.items()))
    result = job.get("result")
    if result and job.get("kind") == "evaluate":
        # An Evaluation: its headline figures (the whole of it: tinyres --json).
        macro = result.get("macro") or {}
        console.print(
            f"{result.get('dataset')} {result.get('split')}, {result.get('count')} images: "
            f"top-1 {_number(result.get('top1'))}, top-5 {_number(result.get('top5'))}, "
            f"loss {_number(result.get('loss'))}, macro F1 {_number(macro.get('f1'))}"
        )
    elif result:
        console.print(f"result: {json.dumps(result)}")


def describe_progress(state: str, progress: dict[str, Any], metrics: dict[str, Any]) -> str:
    """One line: epoch, step, ETA, loss, accuracy and images/s, as far as they are known."""
    parts = [state]
    if progress.get("epochs"):
        parts.append(f"epoch {progress.get('epoch')}/{progress['epochs']}")
    if progress.get("steps"):
        parts.append(f"step {progress.get('step')}/{progress['steps']}")
    if progress.get("eta_seconds") is not None:
        parts.append(f"ETA {float(progress['eta_seconds']):.0f}s")
    for key, label in (("loss", "loss"), ("accuracy", "acc"), ("val_accuracy", "val_acc")):
        if metrics.get(key) is not None:
            parts.append(f"{label} {_number(metrics[key])}")
    if progress.get("images_per_second") is not None:
        parts.append(f"{float(progress['images_per_second']):.0f} img/s")
    return "  ".join(parts)


class ProgressView:
    """Shows a followed job's events: a live bar on a terminal, plain lines otherwise."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.live = console.is_terminal
        self._last_plain = 0.0
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> ProgressView:
        if self.live:
            self._progress = Progress(
                TextColumn(f"[bold]{self.job_id}[/bold]"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[info]}"),
                console=console,
                refresh_per_second=4,
            )
            self._progress.start()
            self._task = self._progress.add_task("job", total=1.0, info="waiting")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def show(self, event: str, data: dict[str, Any]) -> None:
        if event == "progress":
            info = describe_progress(data["state"], data["progress"], data.get("metrics") or {})
            fraction = float(data["progress"].get("fraction", 0.0))
            self._update(fraction, info, force=False)
        elif event == "epoch":
            self._line(
                f"epoch {data.get('epoch')}: "
                + ", ".join(f"{k} {_number(v)}" for k, v in data.items() if k != "epoch")
            )
        elif event == "state":
            self._line(
                f"state: {data['state']}" + (f" ({data['error']})" if data.get("error") else "")
            )
            if self._progress is not None and self._task is not None:
                self._progress.update(self._task, info=data["state"])

    def _update(self, fraction: float, info: str, *, force: bool) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=fraction, info=info)
            return
        now = time.monotonic()
        if force or now - self._last_plain >= PLAIN_EVERY_SECONDS:
            self._last_plain = now
            print(f"{100 * fraction:5.1f}%  {info}", flush=True)

    def _line(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text)
        else:
            print(text, flush=True)

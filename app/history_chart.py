"""The training curves of a train job as a PNG, a resumed job's whole run included.

A resumed job's history begins with the epochs of the job it continued, each such entry
marked ``"from_job": "<id>"`` (a chain of resumes marks each epoch with the job that
trained it). Those epochs are drawn on a shaded band labelled "from job <id>", their
curves dashed, so the whole run reads as one and the inherited part is plain to see.
"""

from __future__ import annotations

import io
from itertools import groupby
from typing import Any

METRICS = ("loss", "accuracy")
SHADES = ("#d9d9d9", "#c6dbef", "#fdd0a2", "#c7e9c0")


def history_png(history: list[dict[str, Any]], title: str) -> bytes:
    """Loss and accuracy per epoch, train and validation, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), dpi=100)
    runs = _runs(history)
    for axis, metric in zip(figure.subplots(1, 2), METRICS, strict=True):
        for index, (origin, entries) in enumerate(runs):
            if origin is not None:
                first, last = entries[0]["epoch"], entries[-1]["epoch"]
                # Epoch e covers (e - 1, e]: the band spans the inherited epochs whole.
                axis.axvspan(
                    first - 1,
                    last,
                    color=SHADES[index % len(SHADES)],
                    alpha=0.5,
                    label=f"from job {origin}",
                )
        for key, label, color in ((metric, "train", "C0"), (f"val_{metric}", "validation", "C1")):
            _plot(axis, runs, key, label, color)
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    figure.suptitle(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _runs(history: list[dict[str, Any]]) -> list[tuple[str | None, list[dict[str, Any]]]]:
    """Consecutive entries grouped by the job that trained them (None: this job)."""
    return [(origin, list(group)) for origin, group in groupby(history, _origin)]


def _origin(entry: dict[str, Any]) -> str | None:
    origin = entry.get("from_job")
    return str(origin) if origin else None


def _plot(axis: Any, runs: list, key: str, label: str, color: str) -> None:
    """One metric's curve: dashed over inherited epochs, solid over this job's, joined."""
    labelled: set[bool] = set()
    previous: tuple[float, float] | None = None
    for origin, entries in runs:
        points = [(e["epoch"], e[key]) for e in entries if e.get(key) is not None]
        if not points:
            continue
        if previous is not None:
            points = [previous, *points]  # join the runs, so the curve has no gap
        xs, ys = zip(*points, strict=True)
        own = origin is None
        axis.plot(
            xs,
            ys,
            color=color,
            linestyle="-" if own else "--",
            marker="o" if own else ".",
            label=None if own in labelled else (label if own else f"{label}, inherited"),
        )
        labelled.add(own)
        previous = points[-1]

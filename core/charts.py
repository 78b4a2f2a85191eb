"""PNG charts for clients: the training curves of a job."""

from __future__ import annotations

import io
from typing import Any


def history_png(history: list[dict[str, Any]], title: str) -> bytes:
    """Loss and accuracy per epoch, train and validation, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), dpi=100)
    epochs = [entry["epoch"] for entry in history]
    for axis, metric in zip(figure.subplots(1, 2), ("loss", "accuracy"), strict=True):
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            values = [entry.get(key) for entry in history]
            if any(value is not None for value in values):
                axis.plot(epochs, values, marker="o", label=label)
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()

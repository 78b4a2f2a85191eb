"""The confusion chart of an evaluation (``GET /models/{id}/confusion.png``).

200 classes make a 200x200 grid of unreadable cells, so past ``MAX_CLASSES`` classes the
chart shows only the most-confused ones: those with the most misclassified images, as true
or as predicted class (the off-diagonal mass of their row plus their column). Rows are
normalised to the share of each true class's images, so a class with few images reads as
clearly as a large one; the cells carry the counts when they fit. Matplotlib (Agg) only.
"""

from __future__ import annotations

import io

import numpy as np

from core.evaluation import Evaluation

MAX_CLASSES = 20
LABEL_CHARS = 28


def confused_classes(matrix: np.ndarray, limit: int = MAX_CLASSES) -> list[int]:
    """The indices of the ``limit`` classes with the most off-diagonal mass, in class order
    (all of them when there are no more than ``limit``)."""
    size = matrix.shape[0]
    if size <= limit:
        return list(range(size))
    off = matrix.astype(np.int64).copy()
    np.fill_diagonal(off, 0)
    mass = off.sum(axis=0) + off.sum(axis=1)
    chosen = sorted(range(size), key=lambda i: (-int(mass[i]), i))[:limit]
    return sorted(chosen)


def _label(wnid: str, label: str) -> str:
    text = wnid if label == wnid else f"{wnid} {label.split(',')[0]}"
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def confusion_png(evaluation: Evaluation) -> bytes:
    """The (most-confused part of the) confusion matrix of ``evaluation`` as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    matrix = np.asarray(evaluation.confusion.matrix, dtype=np.int64)
    shown = confused_classes(matrix)
    sub = matrix[np.ix_(shown, shown)]
    support = matrix.sum(axis=1)[shown]
    share = np.divide(sub, support[:, None], out=np.zeros(sub.shape), where=support[:, None] > 0)
    labels = [_label(evaluation.per_class[i].wnid, evaluation.per_class[i].label) for i in shown]
    side = max(6.0, 0.42 * len(shown) + 3.5)
    figure = Figure(figsize=(side + 1.5, side), dpi=100)
    axis = figure.subplots()
    image = axis.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="share of the true class")
    ticks = np.arange(len(shown))
    axis.set_xticks(ticks, labels, rotation=90, fontsize=8)
    axis.set_yticks(ticks, labels, fontsize=8)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if len(shown) <= MAX_CLASSES:
        for (row, column), count in np.ndenumerate(sub):
            if count:
                color = "white" if share[row, column] > 0.5 else "black"
                axis.text(
                    column, row, str(count), ha="center", va="center", fontsize=7, color=color
                )
    total = matrix.shape[0]
    scope = (
        f"all {total} classes"
        if len(shown) == total
        else f"the {len(shown)} most-confused of {total} classes"
    )
    axis.set_title(
        f"model {evaluation.model} on {evaluation.dataset} ({evaluation.split}, "
        f"{evaluation.count} images): top-1 {evaluation.top1:.3f}\n{scope}",
        fontsize=10,
    )
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()

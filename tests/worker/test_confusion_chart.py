"""The confusion chart stays readable with many classes: only the most confused are drawn."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from core.evaluation import (
    ClassMetrics,
    Confusion,
    Evaluation,
    MacroAverages,
)
from worker.confusion_chart import MAX_CLASSES, confused_classes, confusion_png


def _evaluation(matrix: np.ndarray) -> Evaluation:
    size = matrix.shape[0]
    wnids = [f"n{i:08d}" for i in range(size)]
    return Evaluation(
        model="m",
        dataset="d",
        split="val",
        count=int(matrix.sum()),
        top1=float(np.trace(matrix) / matrix.sum()),
        top5=1.0,
        loss=1.0,
        macro=MacroAverages(precision=0.5, recall=0.5, f1=0.5),
        per_class=[
            ClassMetrics(
                class_index=i, wnid=w, label=f"label {i}, a long description",
                precision=0.5, recall=0.5, f1=0.5, support=int(matrix[i].sum()),
            )
            for i, w in enumerate(wnids)
        ],
        confusion=Confusion(wnids=wnids, matrix=matrix.tolist()),
        most_confused=[],
        worst=[],
    )  # fmt: skip


def test_200_classes_show_the_20_most_confused() -> None:
    rng = np.random.default_rng(0)
    matrix = np.diag(rng.integers(40, 50, 200))
    confused = [3, 17, 42, 99, 150, 151, 152, 199]
    for i in confused:  # a few classes lose many images to their neighbour
        matrix[i, (i + 1) % 200] += 30
    chosen = confused_classes(matrix)
    assert len(chosen) == MAX_CLASSES
    assert {*confused, *((i + 1) % 200 for i in confused)} <= set(chosen)
    image = Image.open(io.BytesIO(confusion_png(_evaluation(matrix))))
    assert image.format == "PNG"
    assert 600 <= image.width <= 2000 and 600 <= image.height <= 2000


def test_few_classes_are_all_shown() -> None:
    matrix = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 4]])
    assert confused_classes(matrix) == [0, 1, 2]
    assert confusion_png(_evaluation(matrix)).startswith(b"\x89PNG")

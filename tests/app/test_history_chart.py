"""history.png of a resumed job: the whole run, the inherited epochs shaded and labelled."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.history_chart import SHADES, history_png
from app.main import create_app
from core.config import Settings
from core.jobs import JobState, JobStore


def _history(origins: dict[int, str]) -> list[dict[str, Any]]:
    """Six epochs of falling loss; epoch e is marked from_job origins[e] when given."""
    entries = []
    for epoch in range(1, 7):
        entry: dict[str, Any] = {
            "epoch": epoch,
            "loss": 2.0 / epoch,
            "accuracy": 0.15 * epoch,
            "val_loss": 2.2 / epoch,
            "val_accuracy": 0.14 * epoch,
            "learning_rate": 0.01,
        }
        if epoch in origins:
            entry["from_job"] = origins[epoch]
        entries.append(entry)
    return entries


def _pixels(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    assert image.size == (1000, 400)
    return np.asarray(image.convert("RGB")).astype(int)


def _shade_pixels(pixels: np.ndarray, shade: str) -> int:
    """Pixels of `shade` drawn at alpha 0.5 over the white axes."""
    rgb = np.array([int(shade[i : i + 2], 16) for i in (1, 3, 5)])
    blended = (rgb + 255) / 2
    return int((np.abs(pixels - blended).max(axis=-1) <= 2).sum())


def test_inherited_epochs_are_shaded_per_origin() -> None:
    plain = _pixels(history_png(_history({}), "job c on digits"))
    resumed = _pixels(history_png(_history({1: "a", 2: "b", 3: "b"}), "job c on digits"))
    # (a few anti-aliased pixels of text and grid lines match the shades' colours)
    assert _shade_pixels(plain, SHADES[0]) < 500 and _shade_pixels(plain, SHADES[1]) < 500
    # One band per origin, the second wider (two epochs against one), on both panels.
    first, second = _shade_pixels(resumed, SHADES[0]), _shade_pixels(resumed, SHADES[1])
    assert first > 2000 and second > 1.5 * first, (first, second)


def test_a_history_made_only_of_inherited_epochs_renders() -> None:
    pixels = _pixels(history_png(_history(dict.fromkeys(range(1, 7), "a")), "t"))
    assert _shade_pixels(pixels, SHADES[0]) > 10_000


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_history_png_of_a_resumed_job(client: TestClient, settings: Settings) -> None:
    store = JobStore(settings.effective_database_url)
    try:
        parent = store.create("train", {"dataset": "digits", "width": 8, "levels": [1]})
        child = store.create(
            "train",
            {"dataset": "digits", "width": 8, "levels": [1], "resume_from": parent.id},
        )
        store.update_job(child.id, history=_history({1: parent.id, 2: parent.id}))
        store.finish(child.id, JobState.SUCCEEDED, result={"model": child.id})
    finally:
        store.engine.dispose()
    answer = client.get(f"/jobs/{child.id}/history.png")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/png"
    assert _shade_pixels(_pixels(answer.content), SHADES[0]) > 2000

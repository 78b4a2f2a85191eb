"""Tests of the recipes: each compiles and learns on real images, the strong one's network,
loss and optimizer survive a checkpoint, and its weight decay spares biases and batch norm."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from core.config import Settings
from core.train_config import TrainConfig
from model.resnet import build_resnet
from tests.utils.datasets import digit_image
from worker.recipes import (
    KernelDecaySGD,
    SmoothedSparseCrossentropy,
    build_model,
    compile_model,
    schedule_callback,
)

CLASSES = [{"index": i, "wnid": f"n{i:08d}", "label": f"digit {i}"} for i in range(4)]
TINY: dict[str, Any] = {"width": 8, "levels": [1, 1], "batch_size": 16}


def _config(recipe: str, **fields: Any) -> TrainConfig:
    return TrainConfig(dataset="d", recipe=recipe, **TINY, **fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """64 real hand-written digits (4 classes): uint8 pixels, as the network takes them."""
    rng = np.random.default_rng(0)
    labels = np.arange(64) % len(CLASSES)
    pixels = np.stack([np.asarray(digit_image(int(label), rng)) for label in labels])
    return pixels.astype(np.uint8), labels.astype(np.int32)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_root=tmp_path, xla=False)


@pytest.mark.parametrize("recipe", ["writeup", "strong"])
def test_each_recipe_compiles_and_learns(
    recipe: str, digits: tuple[np.ndarray, np.ndarray], settings: Settings
) -> None:
    keras.utils.set_random_seed(0)
    config = _config(recipe, learning_rate=0.05, warmup_epochs=1, epochs=5)
    model = build_model(config, CLASSES)
    compile_model(model, config, settings)
    images, labels = digits
    # Training-mode losses: a few steps are too few for batch norm's moving statistics.
    losses = model.fit(
        images,
        labels,
        batch_size=16,
        epochs=config.epochs,
        callbacks=[schedule_callback(config)],
        verbose=0,
    ).history["loss"]
    assert np.isfinite(losses[-1]) and losses[-1] < 0.9 * losses[0], losses
    expected = config.learning_rate_at(config.epochs - 1)
    assert float(model.optimizer.learning_rate) == pytest.approx(expected, rel=1e-5)


def test_writeup_compiles_exactly_as_before(settings: Settings) -> None:
    config = _config("writeup")
    model = build_model(config, CLASSES)
    compile_model(model, config, settings)
    assert type(model.optimizer) is keras.optimizers.SGD
    assert model.optimizer.weight_decay is None
    assert isinstance(model.loss, keras.losses.SparseCategoricalCrossentropy)
    assert (model.l2, model.crop_padding) == (0.01, 0)


def test_strong_model_reloads_with_its_loss_and_optimizer(
    digits: tuple[np.ndarray, np.ndarray], settings: Settings, tmp_path: Path
) -> None:
    keras.utils.set_random_seed(1)
    config = _config("strong")
    model = build_model(config, CLASSES)
    compile_model(model, config, settings)
    images, labels = digits
    model.fit(images, labels, batch_size=16, epochs=1, verbose=0)
    path = tmp_path / "strong.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.optimizer, KernelDecaySGD)
    assert loaded.optimizer.weight_decay == pytest.approx(config.weight_decay)
    assert loaded.optimizer.momentum == pytest.approx(config.momentum)
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) == 4
    assert isinstance(loaded.loss, SmoothedSparseCrossentropy)
    assert loaded.loss.label_smoothing == pytest.approx(0.1)
    assert (loaded.l2, loaded.crop_padding) == (0.0, 4)  # the crop layer came back too
    # The same next step from the original and from the reloaded model.
    model.fit(images[:16], labels[:16], batch_size=16, epochs=1, shuffle=False, verbose=0)
    loaded.fit(images[:16], labels[:16], batch_size=16, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(model.weights, loaded.weights, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_weight_decay_shrinks_kernels_only() -> None:
    model = build_resnet(2, _config("strong").architecture, l2=0.0)
    optimizer = KernelDecaySGD(learning_rate=0.5, weight_decay=0.1)
    optimizer.build(model.trainable_variables)
    before = {v.path: np.asarray(v).copy() for v in model.trainable_variables}
    zeros = [keras.ops.zeros_like(v) for v in model.trainable_variables]
    optimizer.apply_gradients(zip(zeros, model.trainable_variables, strict=True))
    decayed = set()
    for variable in model.trainable_variables:
        now, was = np.asarray(variable), before[variable.path]
        if not np.allclose(now, was):
            np.testing.assert_allclose(now, was * (1 - 0.5 * 0.1), rtol=1e-6)
            decayed.add(variable.name)
    assert decayed == {"kernel"}


def test_smoothed_loss_matches_categorical_crossentropy() -> None:
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(8, 5)).astype(np.float32)
    labels = rng.integers(0, 5, 8)
    reference = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2)
    expected = float(reference(keras.ops.one_hot(labels, 5), logits))
    assert float(SmoothedSparseCrossentropy(0.2)(labels, logits)) == pytest.approx(expected)

"""Tests of the augmentation inside the network: flips and padded crops, seeded and saved."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from core.architecture import ArchitectureConfig
from model import RandomHorizontalFlip, RandomPadCrop, build_resnet


def _images(count: int, size: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def _numpy(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


def _flipped_mask(images: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Per image: True if flipped left-right, False if unchanged; fails otherwise."""
    same = np.all(out == images, axis=(1, 2, 3))
    mirrored = np.all(out == images[:, :, ::-1], axis=(1, 2, 3))
    assert np.all(same | mirrored), "the flip must only flip or keep each image"
    return mirrored


def _state(layer: RandomHorizontalFlip | RandomPadCrop) -> list[int]:
    return _numpy(layer.seed_generator.state).tolist()


def test_flip_flips_whole_images_independently_in_training_only() -> None:
    images = _images(64)
    flip = RandomHorizontalFlip(seed=5)
    np.testing.assert_array_equal(_numpy(flip(images)), images)  # inference: untouched
    np.testing.assert_array_equal(_numpy(flip(images, training=False)), images)
    assert _state(flip) == [5, 0]  # inference draws nothing
    out = _numpy(flip(images, training=True))
    assert out.dtype == np.uint8
    flipped = _flipped_mask(images, out)
    assert 0 < flipped.sum() < len(images)  # P(all 64 coins agree) = 2 ** -63
    assert _state(flip) == [5, 1]


def test_flips_are_reproducible_from_the_seed_and_step() -> None:
    images = _images(32)
    a, b = RandomHorizontalFlip(seed=9), RandomHorizontalFlip(seed=9)
    first = [_numpy(a(images, training=True)) for _ in range(3)]
    second = [_numpy(b(images, training=True)) for _ in range(3)]
    for x, y in zip(first, second, strict=True):
        np.testing.assert_array_equal(x, y)
    masks = [_flipped_mask(images, x).tolist() for x in first]
    assert masks[0] != masks[1]  # each step draws new coins
    other = _numpy(RandomHorizontalFlip(seed=10)(images, training=True))
    assert _flipped_mask(images, other).tolist() != masks[0]


def _window_of(padded: np.ndarray, crop: np.ndarray) -> tuple[int, int]:
    """Where ``crop`` lies in ``padded``; fails if it is no window of it."""
    size = crop.shape[0]
    for top in range(padded.shape[0] - size + 1):
        for left in range(padded.shape[1] - size + 1):
            if np.array_equal(padded[top : top + size, left : left + size], crop):
                return top, left
    raise AssertionError("the crop is no window of the padded image")


@pytest.mark.parametrize(("mode", "np_mode"), [("reflect", "reflect"), ("zero", "constant")])
def test_crop_is_a_random_window_of_the_padded_image(mode: str, np_mode: str) -> None:
    images = _images(16, size=12, seed=1)
    crop = RandomPadCrop(3, mode=mode, seed=4)
    out = _numpy(crop(images, training=True))
    assert out.shape == images.shape and out.dtype == np.float32
    padded = np.pad(images, [(0, 0), (3, 3), (3, 3), (0, 0)], mode=np_mode).astype(np.float32)
    windows = {_window_of(p, o) for p, o in zip(padded, out, strict=True)}
    assert len(windows) > 1 and all(0 <= t <= 6 and 0 <= s <= 6 for t, s in windows)
    # Inference: the pixels as float32, uncropped; nothing drawn.
    np.testing.assert_array_equal(_numpy(crop(images)), images.astype(np.float32))
    assert _state(crop) == [4, 1]


def test_crops_are_reproducible_from_the_seed() -> None:
    images = _images(8, size=10, seed=2)
    a = [_numpy(RandomPadCrop(2, seed=3)(images, training=True)) for _ in range(2)]
    np.testing.assert_array_equal(a[0], a[1])


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="Received: padding=0"):
        RandomPadCrop(0)
    with pytest.raises(ValueError, match="Received: mode='edge'"):
        RandomPadCrop(2, mode="edge")
    with pytest.raises(ValueError, match=r"Received: seed=1\.5"):
        RandomHorizontalFlip(seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="larger than padding"):
        RandomPadCrop(8)(_images(1, size=8), training=True)


def test_random_state_travels_in_the_keras_file(tmp_path: Path) -> None:
    """What exact resume needs: a checkpoint carries the flips' and crops' next draws."""
    model = build_resnet(3, ArchitectureConfig(width=8, levels=[1]), crop_padding=2, seed=21)
    images = _images(4, size=64)
    for _ in range(3):
        model.flip(images, training=True)
    model.crop(images, training=True)
    path = tmp_path / "state.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert _state(loaded.flip) == [21, 3] and _state(loaded.crop) == [22, 1]
    np.testing.assert_array_equal(
        _numpy(loaded.flip(images, training=True)), _numpy(model.flip(images, training=True))
    )
    np.testing.assert_array_equal(
        _numpy(loaded.crop(images, training=True)), _numpy(model.crop(images, training=True))
    )


def test_the_network_augments_in_fit_and_not_at_inference() -> None:
    keras.utils.set_random_seed(0)
    model = build_resnet(2, ArchitectureConfig(width=8, levels=[1]), crop_padding=2, seed=5)
    model.compile(
        optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    images, labels = _images(8, size=64), np.array([0, 1] * 4)
    before = _numpy(model(images, training=False))
    model.evaluate(images, labels, batch_size=4, verbose=0)
    assert _state(model.flip) == [5, 0] and _state(model.crop) == [6, 0]
    model.fit(images, labels, batch_size=4, epochs=2, verbose=0, shuffle=False)
    assert _state(model.flip) == [5, 4] and _state(model.crop) == [6, 4]  # one draw a step
    assert not np.allclose(_numpy(model(images, training=False)), before)

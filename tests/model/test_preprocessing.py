"""Tests of the preprocessing inside the network: rescale and per-image standardization."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from model import Rescale, Standardize, preprocess


def _random_uint8(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _numpy(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


def test_preprocess_standardizes_each_image() -> None:
    rng = np.random.default_rng(1)
    # Images with different brightness and contrast.
    scales = np.array([10, 60, 120, 250])[:, None, None, None]
    offsets = np.array([0, 100, 50, 3])[:, None, None, None]
    images = (rng.random((4, 64, 64, 3)) * scales + offsets).clip(0, 255).astype(np.uint8)
    out = _numpy(preprocess(images))
    assert out.shape == images.shape
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2, 3)), 1.0, atol=1e-4)


def test_preprocess_matches_the_formula_and_single_images() -> None:
    image = _random_uint8((64, 64, 3))
    x = image / 255.0
    expected = (x - x.mean()) / max(x.std(), 1 / np.sqrt(x.size))
    single = _numpy(preprocess(image))
    np.testing.assert_allclose(single, expected, atol=1e-5)
    np.testing.assert_allclose(preprocess(image[np.newaxis])[0], single, atol=1e-6)


def test_preprocess_of_a_flat_image_is_zeros() -> None:
    out = _numpy(preprocess(np.full((2, 64, 64, 3), 77, np.uint8)))
    assert np.all(np.isfinite(out))
    # Zero up to float32 rounding of the mean, scaled by sqrt(pixels).
    np.testing.assert_allclose(out, 0.0, atol=1e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_preprocess_agrees_across_input_dtypes(dtype: type) -> None:
    images = _random_uint8((2, 64, 64, 3))
    np.testing.assert_allclose(preprocess(images.astype(dtype)), preprocess(images), atol=1e-6)


def test_preprocess_rejects_non_rgb_shapes() -> None:
    with pytest.raises(ValueError, match=r"Received: shape=\(64, 64\)"):
        preprocess(np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match=r"Received: shape=\(1, 64, 64, 4\)"):
        preprocess(np.zeros((1, 64, 64, 4), np.uint8))


def test_layers_match_the_old_tensorflow_preprocessing() -> None:
    """Rescale then Standardize is what the reader did on the host before (issue 10):
    ``tf.image.per_image_standardization(uint8 / 255)``."""
    images = _random_uint8((5, 64, 64, 3), seed=2)
    images[1] = 200  # a flat image: divisor 1 / sqrt(pixels)
    old = tf.image.per_image_standardization(tf.cast(images, tf.float32) / 255.0).numpy()
    new = _numpy(Standardize()(Rescale()(images)))
    assert new.dtype == np.float32
    np.testing.assert_allclose(new, old, atol=2e-5)
    np.testing.assert_allclose(_numpy(preprocess(images)), old, atol=2e-5)


def test_layers_compute_in_float32_under_mixed_precision() -> None:
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        rescale, standardize = Rescale(), Standardize()
        out = standardize(rescale(_random_uint8((2, 64, 64, 3))))
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert rescale.compute_dtype == standardize.compute_dtype == "float32"
    assert keras.backend.standardize_dtype(out.dtype) == "float32"


def test_layers_reject_non_rgb_batches() -> None:
    with pytest.raises(ValueError, match=r"Received: shape=\(2, 64, 64, 4\)"):
        Rescale()(np.zeros((2, 64, 64, 4), np.uint8))
    with pytest.raises(ValueError, match=r"Received: shape=\(64, 64, 3\)"):
        Standardize()(np.zeros((64, 64, 3), np.float32))

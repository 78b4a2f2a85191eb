"""Tests of the TensorFlow preprocessing shared by training and prediction."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from model import IMAGE_SIZE, augment, decode_image, preprocess, resize_to_input


def _random_uint8(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _encode(pixels: np.ndarray, fmt: str, mode: str | None = None, **save_args) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode=mode).save(buffer, format=fmt, **save_args)
    return buffer.getvalue()


def test_preprocess_standardizes_each_image() -> None:
    rng = np.random.default_rng(1)
    # Images with different brightness and contrast.
    scales = np.array([10, 60, 120, 250])[:, None, None, None]
    offsets = np.array([0, 100, 50, 3])[:, None, None, None]
    images = (rng.random((4, 64, 64, 3)) * scales + offsets).clip(0, 255).astype(np.uint8)
    out = preprocess(images).numpy()
    assert out.shape == images.shape
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2, 3)), 1.0, atol=1e-4)


def test_preprocess_matches_the_formula_and_single_images() -> None:
    image = _random_uint8((64, 64, 3))
    x = image / 255.0
    expected = (x - x.mean()) / max(x.std(), 1 / np.sqrt(x.size))
    single = preprocess(image).numpy()
    np.testing.assert_allclose(single, expected, atol=1e-5)
    np.testing.assert_allclose(preprocess(image[np.newaxis])[0], single, atol=1e-6)


def test_preprocess_of_a_flat_image_is_zeros() -> None:
    out = preprocess(np.full((2, 64, 64, 3), 77, np.uint8)).numpy()
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


def _flipped_mask(images: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Per image: True if flipped left-right, False if unchanged; fails otherwise."""
    same = np.all(out == images, axis=(1, 2, 3))
    mirrored = np.all(out == images[:, :, ::-1], axis=(1, 2, 3))
    assert np.all(same | mirrored), "augment must only flip or keep each image"
    return mirrored


def test_augment_flips_whole_images_independently() -> None:
    images = _random_uint8((64, 8, 8, 3))
    out = augment(images, seed=5).numpy()
    assert out.dtype == np.uint8
    flipped = _flipped_mask(images, out)
    # P(all 64 coins agree) = 2 ** -63.
    assert 0 < flipped.sum() < len(images)


def test_augment_seed_is_reproducible_and_unseeded_works() -> None:
    images = _random_uint8((32, 8, 8, 3))
    np.testing.assert_array_equal(augment(images, seed=9), augment(images, seed=9))
    pair = tf.constant([9, 4])
    graph = tf.function(lambda x: augment(x, seed=pair))
    np.testing.assert_array_equal(graph(images), augment(images, seed=pair))
    _flipped_mask(images, augment(images).numpy())


def test_augment_single_image() -> None:
    image = _random_uint8((8, 8, 3))
    out = augment(image, seed=1).numpy()
    assert out.shape == image.shape
    _flipped_mask(image[np.newaxis], out[np.newaxis])


def test_decode_png_is_exact() -> None:
    pixels = _random_uint8((IMAGE_SIZE, IMAGE_SIZE, 3))
    out = decode_image(_encode(pixels, "PNG"))
    assert out.dtype == tf.uint8
    np.testing.assert_array_equal(out, pixels)


def test_decode_jpeg_is_close() -> None:
    # A smooth image: JPEG keeps it nearly intact.
    ramp = np.linspace(0, 255, IMAGE_SIZE)
    pixels = np.stack(np.broadcast_arrays(ramp[:, None], ramp[None, :], 128.0), -1)
    pixels = pixels.astype(np.uint8)
    out = decode_image(_encode(pixels, "JPEG", quality=95)).numpy()
    assert out.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    assert out.dtype == np.uint8
    assert np.abs(out.astype(int) - pixels).mean() < 3


def test_decode_grayscale_and_rgba_give_rgb() -> None:
    gray = _random_uint8((IMAGE_SIZE, IMAGE_SIZE))
    out = decode_image(_encode(gray, "PNG", mode="L")).numpy()
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, axis=-1))
    rgba = _random_uint8((IMAGE_SIZE, IMAGE_SIZE, 4))
    out = decode_image(_encode(rgba, "PNG", mode="RGBA")).numpy()
    np.testing.assert_array_equal(out, rgba[..., :3])


def test_decode_resizes_other_sizes() -> None:
    # 100 wide, 80 high, one flat colour: resizing must keep the colour exactly.
    pixels = np.broadcast_to(np.array([200, 10, 90], np.uint8), (80, 100, 3)).copy()
    out = decode_image(_encode(pixels, "PNG")).numpy()
    assert out.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    np.testing.assert_array_equal(out, np.broadcast_to(pixels[0, 0], out.shape))


def test_decode_rejects_garbage() -> None:
    with pytest.raises(tf.errors.InvalidArgumentError):
        decode_image(b"not an image")


def test_decode_in_a_dataset_has_static_shape() -> None:
    png = _encode(_random_uint8((30, 50, 3)), "PNG")
    dataset = tf.data.Dataset.from_tensor_slices([png, png]).map(decode_image)
    assert dataset.element_spec.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    assert dataset.element_spec.dtype == tf.uint8
    assert len(list(dataset)) == 2


def test_resize_to_input_batches_and_passthrough() -> None:
    images = _random_uint8((2, 80, 100, 3))
    out = resize_to_input(images)
    assert tuple(out.shape) == (2, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert out.dtype == tf.uint8
    # Antialiased downscaling keeps the average brightness.
    np.testing.assert_allclose(out.numpy().mean(), images.mean(), atol=1.0)
    ready = _random_uint8((IMAGE_SIZE, IMAGE_SIZE, 3))
    np.testing.assert_array_equal(resize_to_input(ready), ready)
    # Float pixels are rounded and clipped, never wrapped around.
    floats = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), 300.0)
    np.testing.assert_array_equal(resize_to_input(floats), 255)

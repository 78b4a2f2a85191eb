"""Tests of the TensorFlow image decoder shared by the shard reader and ``/predict``."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from core.tf_decode import decode_image, resize_to_input
from model.config import IMAGE_SIZE


def _random_uint8(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _encode(pixels: np.ndarray, fmt: str, mode: str | None = None, **save_args) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode=mode).save(buffer, format=fmt, **save_args)
    return buffer.getvalue()


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

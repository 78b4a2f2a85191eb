"""The TensorFlow half of the one image decoder: encoded bytes -> the network's uint8 pixels.

The shard reader (``worker.shard_reader``) and ``/predict`` (``model.serving``) both decode
with ``decode_image``, so the same file gives the same pixels whether it was sharded or
uploaded (``core.images`` is the Pillow half that checks and stores files first). It lives
here, not in ``model/``, because the network package imports only Keras; this module
imports TensorFlow, so only the worker and the serving code import it, and only when they
decode.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from model.config import IMAGE_SIZE

ImageLike = Any  # a tf.Tensor, NumPy array or nested list of pixels


def _as_images(images: ImageLike, dtype: tf.DType | None = None) -> tf.Tensor:
    """Converts to a tensor and checks it is one RGB image or a batch of them."""
    images = tf.convert_to_tensor(images, dtype=dtype)
    rank = images.shape.rank
    if rank not in (3, 4) or images.shape[-1] not in (None, 3):
        raise ValueError(
            "Expected an RGB image [height, width, 3] or a batch [batch, height, width, 3]. "
            f"Received: shape={images.shape}"
        )
    return images


def resize_to_input(images: ImageLike) -> tf.Tensor:
    """Resizes images of any size to the network's 64x64, as uint8.

    Bilinear with antialiasing (so downscaling averages instead of skipping pixels), then
    rounded and clipped back to 0..255. Images already 64x64 pass through unchanged.

    Args:
        images: Pixels in 0..255, one image or a batch.

    Returns:
        uint8 tensor ``[64, 64, 3]`` or ``[batch, 64, 64, 3]``.
    """
    images = _as_images(images)
    spatial = tf.shape(images)[-3:-1]
    target = tf.constant([IMAGE_SIZE, IMAGE_SIZE])

    def resized() -> tf.Tensor:
        x = tf.image.resize(images, target, method="bilinear", antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)

    def unchanged() -> tf.Tensor:
        # Clip so out-of-range floats cannot wrap around when cast to uint8.
        if images.dtype == tf.uint8:
            return images
        x = tf.clip_by_value(tf.round(tf.cast(images, tf.float32)), 0.0, 255.0)
        return tf.cast(x, tf.uint8)

    out = tf.cond(tf.reduce_all(tf.equal(spatial, target)), unchanged, resized)
    # tf.cond loses the static height and width; restore them for downstream shape checks.
    static = images.shape[:-3].concatenate([IMAGE_SIZE, IMAGE_SIZE, 3])
    return tf.ensure_shape(out, static)


def decode_image(data: bytes | str | tf.Tensor) -> tf.Tensor:
    """Decodes an encoded image (JPEG, PNG, GIF, BMP, WebP) into network-sized pixels.

    Grayscale and RGBA become RGB; an animated GIF gives its first frame. The result is
    deterministic for given bytes.

    Args:
        data: The encoded file contents, as bytes or a scalar string tensor.

    Returns:
        uint8 tensor ``[64, 64, 3]``.

    Raises:
        tf.errors.InvalidArgumentError: If the bytes are not a supported image.
    """
    data = tf.convert_to_tensor(data, dtype=tf.string)
    image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
    return resize_to_input(image)

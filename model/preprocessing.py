"""Image preprocessing shared by training and prediction, in TensorFlow ops only.

Every function works eagerly and inside ``tf.data`` pipelines or ``tf.function``s, on a
single image ``[height, width, 3]`` or a batch ``[batch, height, width, 3]``.
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


def preprocess(images: ImageLike) -> tf.Tensor:
    """Scales pixels to [0, 1], then standardizes each image to mean 0 and std 1.

    Mirrors the write-up's ``ImageDataGenerator(rescale=1/255, samplewise_center=True,
    samplewise_std_normalization=True)``. As in ``tf.image.per_image_standardization``, the
    divisor is ``max(std, 1 / sqrt(pixels))`` so flat images become zeros, not NaNs.

    Args:
        images: Pixels in 0..255 (any numeric dtype), one image or a batch.

    Returns:
        float32 tensor of the same shape.
    """
    images = _as_images(images)
    scaled = tf.cast(images, tf.float32) / 255.0
    return tf.image.per_image_standardization(scaled)


def _flip_coins(batch: tf.Tensor, seed: int | tf.Tensor | None) -> tf.Tensor:
    """One boolean per image, True with probability 1/2."""
    shape = tf.reshape(batch, [1])
    if seed is None:
        draws = tf.random.uniform(shape)
    else:
        # Stateless draws: the same seed gives the same flips, in eager mode and in graphs.
        seed_t = tf.cast(seed, tf.int64)
        pair = tf.stack([seed_t, tf.constant(0, tf.int64)]) if seed_t.shape.rank == 0 else seed_t
        draws = tf.random.stateless_uniform(shape, seed=pair)
    return draws < 0.5


def augment(images: ImageLike, seed: int | tf.Tensor | None = None) -> tf.Tensor:
    """Flips each image left-right with probability 1/2 (training only).

    Mirrors the write-up's ``horizontal_flip=True``. Vectorized: one coin per image.

    Args:
        images: One image or a batch, any dtype.
        seed: None for fresh randomness on each call; an int or a shape-[2] int tensor for
            reproducible flips (``tf.random.stateless_uniform``).

    Returns:
        Tensor of the same shape and dtype.
    """
    images = _as_images(images)
    single = images.shape.rank == 3
    batch = images[tf.newaxis] if single else images
    flip = _flip_coins(tf.shape(batch)[0], seed)
    # The width axis of NHWC is 2.
    flipped = tf.where(flip[:, tf.newaxis, tf.newaxis, tf.newaxis], tf.reverse(batch, [2]), batch)
    return flipped[0] if single else flipped


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

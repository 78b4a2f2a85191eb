"""Tests of the ResNet's blocks: argument checks, shapes and the residual gradient."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from model import Bottleneck, Downsample, ResnetBasic, SpecialBottleneck, Tail
from tests.model.utils import randomize_weights


@pytest.mark.parametrize(
    ("make", "shown"),
    [
        (lambda: Tail(0), "Received: filters=0"),
        (lambda: ResnetBasic(0), "Received: filters=0"),
        (lambda: ResnetBasic(4, kernel_size=0), "Received: kernel_size=0"),
        (lambda: ResnetBasic(4, strides=[1, 2, 3]), r"Received: strides=\[1, 2, 3\]"),
        (lambda: Bottleneck(2), "Received: filters=2"),
        (lambda: SpecialBottleneck(3), "Received: filters=3"),
        (lambda: Downsample(1), "Received: filters=1"),
    ],
)
def test_blocks_reject_bad_arguments(make, shown: str) -> None:
    with pytest.raises(ValueError, match=shown):
        make()


def test_bottleneck_needs_matching_channels() -> None:
    with pytest.raises(ValueError, match=r"Received: input_shape=\(1, 4, 4, 6\)"):
        Bottleneck(4).build((1, 4, 4, 6))


def test_block_output_shapes() -> None:
    x = tf.zeros((1, 8, 8, 6))
    # The special bottleneck's convolution adapts any channel count.
    assert tuple(SpecialBottleneck(4)(x).shape) == (1, 8, 8, 4)
    assert tuple(Downsample(6)(x).shape) == (1, 4, 4, 12)
    assert tuple(Tail(5)(x).shape) == (1, 4, 4, 5)


def test_identity_path_adds_the_upstream_gradient() -> None:
    """Problem 26 done right: y = x + f(x) gives de/dx = de/dy + J_f^T de/dy.

    The write-up wrote de/dx = df/dx . de/dy, dropping the identity term. In inference mode
    batch norm is a fixed affine map, so f is an ordinary function of x.
    """
    rng = np.random.default_rng(26)
    block = Bottleneck(4, dtype="float64")
    block.build((1, 4, 4, 4))
    randomize_weights(block, seed=26)
    x = tf.constant(rng.normal(size=(1, 4, 4, 4)))
    upstream = tf.constant(rng.normal(size=(1, 4, 4, 4)))

    with tf.GradientTape() as tape:
        tape.watch(x)
        y = block(x, training=False)
        e = tf.reduce_sum(y * upstream)
    grad = tape.gradient(e, x).numpy().ravel()

    # The residual branch alone, through the block's sublayers.
    with tf.GradientTape() as tape:
        tape.watch(x)
        f = x
        for sublayer in block.residual_blocks:
            f = sublayer(f, training=False)
    jacobian = tape.jacobian(f, x).numpy().reshape(x.shape.num_elements(), -1)
    u = upstream.numpy().ravel()

    np.testing.assert_allclose(y, x + f, atol=1e-12)
    np.testing.assert_allclose(grad, u + jacobian.T @ u, atol=1e-10)
    # The write-up's formula misses the identity path's contribution.
    assert not np.allclose(grad, jacobian.T @ u, atol=1e-3)

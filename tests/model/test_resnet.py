"""Tests of the Keras 3 ResNet: shapes, names, serialization and the residual gradient."""

from __future__ import annotations

import json
import math
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from model import (
    INPUT_SHAPE,
    ArchitectureConfig,
    Bottleneck,
    Downsample,
    Resnet,
    ResnetBasic,
    SpecialBottleneck,
    Tail,
    build_resnet,
    get_preset,
    preprocess,
)

TINY = ArchitectureConfig(width=8, levels=[1, 1])
CLASSES = 10


def _randomize(layer: keras.layers.Layer, seed: int) -> None:
    """Gives every variable random values, so tests do not pass by accident of the
    initial ones (zero moving means, unit variances, gammas of one)."""
    rng = np.random.default_rng(seed)
    for variable in layer.weights:
        if variable.path.endswith("moving_variance"):
            values = rng.uniform(0.5, 2.0, variable.shape)
        else:
            values = rng.normal(0.0, 0.3, variable.shape)
        variable.assign(values.astype(variable.dtype))


def _images(count: int, seed: int = 0) -> tf.Tensor:
    rng = np.random.default_rng(seed)
    return preprocess(rng.integers(0, 256, (count, *INPUT_SHAPE), dtype=np.uint8))


@pytest.fixture(scope="module")
def tiny() -> Resnet:
    model = build_resnet(CLASSES, TINY)
    _randomize(model, seed=1)
    return model


@pytest.mark.parametrize("preset", ["seed", "half"])
def test_preset_gives_logits_per_class(preset: str) -> None:
    arch = get_preset(preset)
    model = build_resnet(200, arch)
    logits = model(_images(2), training=False)
    assert tuple(logits.shape) == (2, 200)
    # Every level doubles the feature maps that reach the dense layer.
    assert tuple(model.dense.kernel.shape) == (arch.width * 2 ** len(arch.levels), 200)


def test_layer_names_are_predictable(tiny: Resnet) -> None:
    assert [layer.name for layer in tiny.layers] == [
        "tail",
        "level_0_special",
        "level_0_bottleneck_0",
        "downsample_0",
        "level_1_bottleneck_0",
        "downsample_1",
        "final_bn",
        "final_relu",
        "gap",
        "dense",
    ]
    # Variable paths follow the layer names (the model name gets a suffix when repeated).
    assert tiny.weights[0].path.endswith("/tail/conv/kernel")


def test_summary_lists_layers_and_shapes(tiny: Resnet, capsys: pytest.CaptureFixture) -> None:
    tiny.summary(line_length=120)
    printed = capsys.readouterr().out
    for name in ["tail", "level_0_special", "downsample_1", "final_bn", "dense"]:
        assert name in printed
    assert "(None, 8, 8, 32)" in printed  # after downsample_1: 64 / 2**3 pixels, 8 * 4 maps
    assert "(None, 10)" in printed


def test_dense_kernel_is_l2_regularized(tiny: Resnet) -> None:
    (penalty,) = tiny.losses
    expected = 0.01 * np.sum(np.square(tiny.dense.kernel.numpy()))
    np.testing.assert_allclose(float(penalty), expected, rtol=1e-5)


def test_config_round_trip(tiny: Resnet) -> None:
    config = tiny.get_config()
    assert {k: config[k] for k in ("classes", "width", "levels", "l2")} == {
        "classes": CLASSES,
        "width": 8,
        "levels": [1, 1],
        "l2": 0.01,
    }
    json.dumps(config)  # the .keras format stores it as JSON
    clone = Resnet.from_config(config)
    clone.build((None, *INPUT_SHAPE))
    clone.set_weights(tiny.get_weights())
    images = _images(4)
    np.testing.assert_allclose(
        clone(images, training=False), tiny(images, training=False), atol=1e-6
    )


def test_keras_file_round_trip(tiny: Resnet, tmp_path: Path) -> None:
    path = tmp_path / "tiny.keras"
    keras.saving.save_model(tiny, path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is Resnet
    assert [w.path for w in loaded.weights] == [w.path for w in tiny.weights]
    for restored, original in zip(loaded.weights, tiny.weights, strict=True):
        np.testing.assert_array_equal(restored.numpy(), original.numpy(), err_msg=original.path)
    images = _images(4)
    np.testing.assert_allclose(
        loaded(images, training=False), tiny(images, training=False), atol=1e-6
    )


@pytest.mark.parametrize(
    ("kwargs", "shown"),
    [
        ({"classes": 0}, "Received: classes=0"),
        ({"classes": 10, "width": 6}, "Received: width=6"),
        ({"classes": 10, "levels": []}, "Received: levels=[]"),
        ({"classes": 10, "levels": [1, -1]}, "Received: levels=[1, -1]"),
        ({"classes": 10, "levels": "ab"}, "Received: levels=ab"),
        ({"classes": 10, "l2": -0.1}, "Received: l2=-0.1"),
    ],
)
def test_resnet_rejects_bad_arguments(kwargs: dict, shown: str) -> None:
    with pytest.raises(ValueError, match=shown.replace("[", r"\[").replace("]", r"\]")):
        Resnet(**kwargs)


def test_levels_accept_numpy_ints() -> None:
    model = Resnet(10, width=8, levels=np.array([1, 0]))
    assert model.get_config()["levels"] == [1, 0]
    assert all(type(n) is int for n in model.levels)  # JSON-serializable


def test_dtype_policy_reaches_nested_layers() -> None:
    """Mixed precision (for GPU training) must reach the convolutions inside the blocks."""
    model = Resnet(10, width=8, levels=[1], dtype="mixed_float16")
    model.build((None, *INPUT_SHAPE))
    conv = model.blocks[0].residual_blocks[1].conv
    assert (conv.compute_dtype, conv.variable_dtype) == ("float16", "float32")
    assert model(_images(1), training=False).dtype == tf.float16


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
    _randomize(block, seed=26)
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


def test_untrained_model_guesses_at_chance() -> None:
    """The write-up's sanity check: before training, accuracy ~ 1/classes and the
    cross-entropy ~ ln(classes), i.e. the logits start near uniform."""
    model = build_resnet(CLASSES, TINY)
    count = 1000
    labels = np.random.default_rng(7).integers(0, CLASSES, count)
    logits = model.predict(_images(count, seed=8), batch_size=250, verbose=0)
    accuracy = np.mean(np.argmax(logits, axis=1) == labels)
    # Binomial std at p = 0.1, n = 1000 is ~0.0095: +-0.05 is more than 5 sigma.
    assert abs(accuracy - 1 / CLASSES) < 0.05
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    assert abs(float(loss) - math.log(CLASSES)) < 0.5


def test_a_few_training_steps_fit_a_batch() -> None:
    """compile() and training work on the subclassed model and the loss goes down."""
    keras.utils.set_random_seed(3)
    model = build_resnet(4, TINY)
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    images = _images(16)
    labels = np.arange(16) % 4
    # train_on_batch: fit() adds ~0.3 s of callbacks and logging per epoch.
    losses = [float(model.train_on_batch(images, labels)) for _ in range(10)]
    assert losses[-1] < 0.6 * losses[0], losses


def test_keras_file_carries_the_class_names(tmp_path: Path) -> None:
    names = [{"index": i, "wnid": f"n{i:08d}", "label": f"class {i}"} for i in range(3)]
    model = build_resnet(3, ArchitectureConfig(width=8, levels=[1]), class_names=names)
    path = tmp_path / "named.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.class_names == names
    with pytest.raises(ValueError, match="one entry per class"):
        build_resnet(2, ArchitectureConfig(width=8, levels=[1]), class_names=names)

"""Tests of the whole Keras 3 ResNet: presets, shapes, names, serialization, training."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from core.architecture import ArchitectureConfig
from core.train_config import preset_architecture
from model import INPUT_SHAPE, Resnet, build_resnet
from tests.model.utils import random_images, randomize_weights

ROOT = Path(__file__).resolve().parents[2]
TINY = ArchitectureConfig(width=8, levels=[1, 1])
CLASSES = 10


@pytest.fixture(scope="module")
def tiny() -> Resnet:
    model = build_resnet(CLASSES, TINY)
    randomize_weights(model, seed=1)
    return model


@pytest.mark.parametrize(
    ("preset", "total", "trainable"),
    [
        # Total = trainable + batch-norm moving means and variances (16,576 / 8,288),
        # as Keras' summary() counts; the write-up's network at 200 classes.
        ("writeup", 3_138_056, 3_121_480),
        ("half", 844_584, 836_296),
    ],
)
def test_preset_gives_logits_per_class(preset: str, total: int, trainable: int) -> None:
    arch = preset_architecture(preset)  # type: ignore[arg-type]
    model = build_resnet(200, arch)
    logits = model(random_images(2), training=False)
    assert tuple(logits.shape) == (2, 200)
    # Every level doubles the feature maps that reach the dense layer.
    assert tuple(model.dense.kernel.shape) == (arch.width * 2 ** len(arch.levels), 200)
    assert model.count_params() == total
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == trainable


def test_layer_names_are_predictable(tiny: Resnet) -> None:
    assert [layer.name for layer in tiny.layers] == [
        "flip",
        "rescale",
        "standardize",
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
    images = random_images(4)
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
    images = random_images(4)
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
        # The same bounds as the API (ArchitectureConfig): at most 6 levels of 64 blocks.
        ({"classes": 10, "levels": [1] * 7}, "Received: levels=[1, 1, 1, 1, 1, 1, 1]"),
        ({"classes": 10, "levels": [65]}, "Received: levels=[65]"),
        ({"classes": 10, "width": 516}, "Received: width=516"),
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
    # The head stays in float32 (issue 10): logits and softmax are never half precision.
    assert model(random_images(1), training=False).dtype == tf.float32


def _learnable_batch(count: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noise images whose label is the quadrant holding a bright square: a batch a small
    network can learn, with true labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % classes
    images = rng.integers(0, 96, (count, *INPUT_SHAPE), dtype=np.uint8)
    half = INPUT_SHAPE[0] // 2
    for image, label in zip(images, labels, strict=True):
        top, left = (label // 2) * half, (label % 2) * half
        image[top + 8 : top + half - 8, left + 8 : left + half - 8] = 255
    return images, labels  # uint8: the network preprocesses them itself


def _accuracy(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> float:
    logits = model(images, training=False)
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def test_untrained_model_guesses_at_chance() -> None:
    """The write-up's sanity check: before training the logits are near uniform, so the
    cross-entropy is ~ ln(classes) and no class gets much more than 1/classes."""
    model = build_resnet(CLASSES, TINY)
    images, labels = _learnable_batch(200, 4)
    logits = model.predict(images, batch_size=100, verbose=0)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    assert abs(float(loss) - math.log(CLASSES)) < 0.5
    assert float(np.max(tf.nn.softmax(logits))) < 3 / CLASSES


def test_a_few_training_steps_fit_a_learnable_batch() -> None:
    """compile() and training work on the subclassed model: on a batch with true labels,
    accuracy goes from about chance to (nearly) all of it, in inference mode."""
    keras.utils.set_random_seed(3)
    model = build_resnet(4, TINY)
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    images, labels = _learnable_batch(32, 4)
    before = _accuracy(model, images, labels)
    # train_on_batch: fit() adds ~0.3 s of callbacks and logging per epoch.
    losses = [float(model.train_on_batch(images, labels)) for _ in range(40)]
    assert losses[-1] < 0.3 * losses[0], losses
    assert before <= 0.5
    assert _accuracy(model, images, labels) >= 0.9


def test_keras_file_carries_the_class_names(tmp_path: Path) -> None:
    names = [{"index": i, "wnid": f"n{i:08d}", "label": f"class {i}"} for i in range(3)]
    model = build_resnet(3, ArchitectureConfig(width=8, levels=[1]), class_names=names)
    path = tmp_path / "named.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.class_names == names
    with pytest.raises(ValueError, match="one entry per class"):
        build_resnet(2, ArchitectureConfig(width=8, levels=[1]), class_names=names)


def test_the_head_computes_in_float32_under_mixed_precision() -> None:
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        network = Resnet(3, width=8, levels=[1])
        logits = network(np.zeros((2, 64, 64, 3), "float32"))
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert network.tail.compute_dtype == "bfloat16"
    assert network.dense.compute_dtype == "float32"
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"


def test_the_crop_layer_comes_first_and_is_saved(tmp_path: Path) -> None:
    model = build_resnet(CLASSES, TINY, crop_padding=4, seed=11)
    assert [layer.name for layer in model.layers][:4] == ["crop", "flip", "rescale", "standardize"]
    assert (model.crop.padding, model.crop.seed, model.flip.seed) == (4, 12, 11)
    path = tmp_path / "crop.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_config()["crop_padding"] == 4 and loaded.crop.padding == 4
    images = random_images(3)
    np.testing.assert_allclose(loaded(images, training=False), model(images), atol=1e-6)
    with pytest.raises(ValueError, match="Received: crop_padding=-1"):
        build_resnet(CLASSES, TINY, crop_padding=-1)


def test_any_numeric_dtype_gives_the_same_logits(tiny: Resnet) -> None:
    images = random_images(2, seed=4)
    expected = tiny(images, training=False)
    for dtype in ("float32", "int32", "float64"):
        np.testing.assert_allclose(tiny(images.astype(dtype), training=False), expected, atol=1e-6)


def test_model_package_imports_only_keras() -> None:
    """model/ (but serving, which decodes uploads) runs without TensorFlow in its imports."""
    code = (
        "import sys, model.resnet, model.augment, model.preprocessing, model.blocks; "
        "bad = {'tensorflow', 'pydantic', 'core'} & {m.split('.')[0] for m in sys.modules}; "
        "assert not bad, bad"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=120)

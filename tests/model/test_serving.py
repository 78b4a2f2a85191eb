"""Tests of model.serving: loading and caching models, decoding uploads, top k."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from core.architecture import ArchitectureConfig
from core.manifest import ClassEntry
from core.tf_decode import decode_image, resize_to_input
from model import build_resnet
from model.serving import (
    BadImage,
    ImageTooLarge,
    LoadedModel,
    ModelBroken,
    ModelCache,
    decode_upload,
    load_model,
    top_k,
)

NAMES = [{"index": i, "wnid": f"n{i:08d}", "label": f"label {i}"} for i in range(5)]
CLASSES = [ClassEntry.model_validate(entry) for entry in NAMES]


def _encode(pixels: np.ndarray, fmt: str, mode: str | None = None) -> bytes:
    image = Image.fromarray(pixels)
    buffer = io.BytesIO()
    (image.convert(mode) if mode else image).save(buffer, format=fmt)
    return buffer.getvalue()


def _pixels(seed: int, shape: tuple[int, int] = (64, 64)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    network = build_resnet(5, ArchitectureConfig(width=8, levels=[1, 1]), class_names=NAMES)
    rng = np.random.default_rng(0)
    for variable in network.weights:
        if not variable.path.endswith("moving_variance"):
            variable.assign(rng.normal(0, 0.3, variable.shape).astype(variable.dtype))
    path = tmp_path_factory.mktemp("serving") / "model.keras"
    network.save(path)
    return path


@pytest.fixture(scope="module")
def loaded(saved: Path) -> LoadedModel:
    return load_model("m1", saved)


def test_loaded_model_matches_the_network_called_directly(loaded: LoadedModel, saved: Path) -> None:
    pixels = np.stack([_pixels(seed) for seed in range(3)])
    network = keras.saving.load_model(saved, compile=False)
    # The network takes the uint8 pixels as they are: its preprocessing is inside it.
    expected = tf.nn.softmax(network(pixels, training=False)).numpy()
    got = loaded.probabilities(pixels)
    assert got.dtype == np.float32 and got.shape == (3, 5)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)
    assert loaded.class_names == CLASSES and loaded.num_classes == 5


def test_serving_function_is_traced_once_for_any_batch_size(loaded: LoadedModel) -> None:
    for batch in (1, 2, 7):
        loaded.probabilities(np.zeros((batch, 64, 64, 3), np.uint8))
    assert loaded.serve.experimental_get_tracing_count() == 1  # type: ignore[attr-defined]


def test_a_mixed_precision_model_is_served_in_float32(tmp_path: Path) -> None:
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        network = build_resnet(5, ArchitectureConfig(width=8, levels=[1]), class_names=NAMES)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert network.tail.compute_dtype == "bfloat16"
    path = tmp_path / "bf16.keras"
    network.save(path)
    served = load_model("bf16", path)
    assert served.network.dtype_policy.name == "float32"
    assert served.network.tail.compute_dtype == "float32"
    pixels = np.stack([_pixels(seed) for seed in range(2)])
    float32 = build_resnet(5, ArchitectureConfig(width=8, levels=[1]))
    float32.set_weights(network.get_weights())  # the same float32 variables
    expected = tf.nn.softmax(float32(pixels, training=False)).numpy()
    np.testing.assert_allclose(served.probabilities(pixels), expected, rtol=1e-5, atol=1e-6)


def test_model_saved_without_class_names_gets_numbered_ones(tmp_path: Path) -> None:
    path = tmp_path / "plain.keras"
    build_resnet(2, ArchitectureConfig(width=8, levels=[1])).save(path)
    assert load_model("plain", path).class_names == [
        ClassEntry(index=0, wnid="0", label="0"),
        ClassEntry(index=1, wnid="1", label="1"),
    ]


def test_broken_model_file_raises_model_broken(tmp_path: Path) -> None:
    path = tmp_path / "broken.keras"
    path.write_bytes(b"not a zip")
    with pytest.raises(ModelBroken):
        load_model("broken", path)


def test_top_k_sorts_and_labels() -> None:
    probabilities = np.array([0.1, 0.4, 0.05, 0.4, 0.05], np.float32)
    best = top_k(probabilities, 3, CLASSES)
    assert [entry.index for entry, _ in best] == [1, 3, 0]  # ties keep class order
    assert best[0] == (ClassEntry(index=1, wnid="n00000001", label="label 1"), pytest.approx(0.4))
    assert all(type(probability) is float for _, probability in best)
    assert len(top_k(probabilities, 99, CLASSES)) == 5


class _CountingLoader:
    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[str] = []
        self.delay = delay
        self._lock = threading.Lock()

    def __call__(self, model_id: str, path: Path) -> LoadedModel:
        with self._lock:
            self.calls.append(model_id)
        time.sleep(self.delay)
        if model_id == "bad":
            raise ModelBroken("bad")
        return LoadedModel(id=model_id, network=None, class_names=[], serve=lambda x: x)


def test_cache_is_a_bounded_lru() -> None:
    loader = _CountingLoader()
    cache = ModelCache(2, loader=loader)
    a = cache.get("a", Path("a"))
    cache.get("b", Path("b"))
    assert cache.get("a", Path("a")) is a  # a is now the most recently used
    cache.get("c", Path("c"))  # evicts b
    assert cache.ids() == ["a", "c"]
    cache.get("b", Path("b"))
    assert loader.calls == ["a", "b", "c", "b"]


def test_cache_loads_once_for_concurrent_callers_and_retries_failures() -> None:
    loader = _CountingLoader(delay=0.2)
    cache = ModelCache(4, loader=loader)
    results: list[LoadedModel] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get("a", Path("a")))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert loader.calls == ["a"] and len({id(r) for r in results}) == 1
    for _ in range(2):
        with pytest.raises(ModelBroken):
            cache.get("bad", Path("bad"))
    assert loader.calls == ["a", "bad", "bad"] and cache.ids() == ["a"]


def test_decode_upload_gives_the_training_pixels() -> None:
    pixels = _pixels(1, (100, 150))
    for fmt in ("JPEG", "PNG", "GIF", "BMP", "WEBP"):
        data = _encode(pixels, fmt)
        got = decode_upload(data, 10**6)
        assert got.dtype == np.uint8 and got.shape == (64, 64, 3)
        np.testing.assert_array_equal(got, decode_image(data).numpy())


def test_decode_upload_falls_back_to_pillow_where_tensorflow_cannot() -> None:
    data = _encode(_pixels(2), "BMP", mode="1")  # 1-bit BMP: TensorFlow refuses it
    expected = resize_to_input(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    np.testing.assert_array_equal(decode_upload(data, 10**6), expected.numpy())


def test_decode_upload_refuses_bad_and_huge_images() -> None:
    jpeg = _encode(_pixels(3, (128, 128)), "JPEG")
    for bad in (b"", b"plain text", jpeg[: len(jpeg) // 2], _encode(_pixels(3), "TIFF")):
        with pytest.raises(BadImage):
            decode_upload(bad, 10**6)
    with pytest.raises(ImageTooLarge, match="128x128"):
        decode_upload(jpeg, 128 * 128 - 1)

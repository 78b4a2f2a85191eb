"""Serving trained models: load a model file once, classify batches of pixels.

A model is a ``.keras`` file with an id; which file a model id names is the service's
business (``app.model_registry``), not this module's. ``ModelCache`` keeps the last few
loaded, each with a ``tf.function`` of fixed input signature that feeds uint8 pixels
straight to the network (its preprocessing is inside it) and a softmax, so no request
ever retraces a graph or calls ``Model.predict``. Models are served in float32, whatever
precision they were trained in.

Importing this module does not import TensorFlow (the API imports it at start-up); the
first model load or image decode does.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.images import ImageRejected, to_stored
from core.images import ImageTooLarge as ImageTooLarge  # re-exported: raised here
from core.manifest import ClassEntry
from model.config import INPUT_SHAPE

ClassNames = list[ClassEntry]


class ServingError(Exception):
    """A request the serving layer cannot answer; the message is meant for the client."""


class ModelBroken(ServingError):
    """The model file exists but cannot be loaded (a fault of the server, not the client)."""


# Uploads are refused with the errors of the one image decoder (``core.images``):
# BadImage for not an image, truncated or corrupt; its subclass ImageTooLarge for an
# image over the pixel limit.
BadImage = ImageRejected


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model ready to classify: the network, its classes and its serving function.

    Attributes:
        id: The model id (its train job's id).
        network: The loaded ``keras.Model``.
        class_names: One class per output, in output order.
        serve: Function (a ``tf.function`` under TensorFlow) from uint8 pixels
            ``[batch, 64, 64, 3]`` to probabilities.
    """

    id: str
    network: Any
    class_names: ClassNames
    serve: Callable[[Any], Any]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """Class probabilities ``[batch, classes]`` (float32) of uint8 pixels."""
        return np.asarray(self.serve(pixels), dtype=np.float32)


def load_model(model_id: str, path: Path) -> LoadedModel:
    """Loads a ``.keras`` model file and warms its serving function up (slow: seconds).

    A model trained under mixed precision is served in float32 (see ``as_float32``).

    Raises:
        ModelBroken: The file is not a loadable tinyres model.
    """
    import keras

    import model.resnet  # noqa: F401  (registers the tinyres layers for deserialization)

    try:
        network = as_float32(keras.saving.load_model(path, compile=False))
    except Exception as exc:  # Keras raises many kinds for a bad file
        raise ModelBroken(f"model {model_id} cannot be loaded: {type(exc).__name__}") from exc
    serve = _serving_function(network)
    # Warm-up: the first call traces the graph; no request should pay for that.
    outputs = serve(np.zeros((1, *INPUT_SHAPE), np.uint8)).shape[-1]
    names = _class_names(network, outputs)
    return LoadedModel(id=model_id, network=network, class_names=names, serve=serve)


def as_float32(network: Any) -> Any:
    """``network`` computing in float32: itself, or a float32 copy of a mixed-precision one.

    A ``.keras`` file keeps its dtype policy (``mixed_bfloat16`` for a GPU-trained model), and
    bf16 on the API's CPU is slow and coarse. The variables are float32 under any mixed
    policy, so the copy (rebuilt from the config with a float32 policy) gets them exactly.
    """
    if network.dtype_policy.name == "float32":
        return network
    copy = type(network).from_config({**network.get_config(), "dtype": "float32"})
    copy.build((None, *INPUT_SHAPE))
    copy.set_weights(network.get_weights())
    return copy


def _serving_function(network: Any) -> Callable[[Any], Any]:
    """uint8 pixels ``[batch, 64, 64, 3]`` -> float32 probabilities, straight through the
    network (which preprocesses its own inputs) and a softmax.

    Under TensorFlow a ``tf.function`` of fixed input signature, traced once for any batch
    size; under another backend the network called as it is.
    """
    import keras

    def probabilities(images: Any) -> Any:
        logits = network(images, training=False)
        return keras.ops.softmax(keras.ops.cast(logits, "float32"), axis=-1)

    if keras.backend.backend() != "tensorflow":
        return probabilities
    import tensorflow as tf

    signature = tf.TensorSpec([None, *INPUT_SHAPE], tf.uint8, name="images")
    return tf.function(probabilities, input_signature=[signature])


def _class_names(network: Any, outputs: int) -> ClassNames:
    """The classes saved in the model's config; numbered ones for a model saved without."""
    names = getattr(network, "class_names", None)
    if isinstance(names, list) and len(names) == outputs:
        return [
            ClassEntry(index=i, wnid=str(entry["wnid"]), label=str(entry["label"]))
            for i, entry in enumerate(names)
        ]
    return [ClassEntry(index=i, wnid=str(i), label=str(i)) for i in range(outputs)]


class ModelCache:
    """The most recently used models, at most ``capacity`` of them; thread-safe.

    Each model is loaded once even when many threads ask for it at the same time: the
    first loads it, the others wait for that load instead of starting their own.
    """

    def __init__(
        self,
        capacity: int,
        loader: Callable[[str, Path], LoadedModel] = load_model,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1. Received: capacity={capacity}")
        self.capacity = capacity
        self._loader = loader
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._loading: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def ids(self) -> list[str]:
        """Cached model ids, least recently used first."""
        with self._lock:
            return list(self._models)

    def _cached(self, model_id: str) -> LoadedModel | None:
        with self._lock:
            loaded = self._models.get(model_id)
            if loaded is not None:
                self._models.move_to_end(model_id)
            return loaded

    def get(self, model_id: str, path: Path) -> LoadedModel:
        """The loaded model ``model_id``, loading it from ``path`` on a miss."""
        loaded = self._cached(model_id)
        if loaded is not None:
            return loaded
        with self._lock:
            load_lock = self._loading.setdefault(model_id, threading.Lock())
        with load_lock:
            loaded = self._cached(model_id)  # loaded by another thread while we waited
            if loaded is not None:
                return loaded
            try:
                loaded = self._loader(model_id, path)
            except BaseException:
                with self._lock:
                    self._loading.pop(model_id, None)
                raise
            # Cached and no longer loading in one step: a caller arriving in between
            # would otherwise miss both and load the model a second time.
            with self._lock:
                self._models[model_id] = loaded
                self._loading.pop(model_id, None)
                while len(self._models) > self.capacity:
                    self._models.popitem(last=False)
        return loaded


@functools.cache
def _decoder() -> Callable[[Any], Any]:
    """``core.tf_decode.decode_image`` compiled once for scalar string inputs."""
    import tensorflow as tf

    from core.tf_decode import decode_image

    return tf.function(decode_image, input_signature=[tf.TensorSpec([], tf.string)])


def decode_upload(data: bytes, max_pixels: int) -> np.ndarray:
    """Checks an uploaded image file and decodes it to the network's input pixels.

    The upload goes through what sharding does to a source file (``core.images.to_stored``:
    the same format allowlist, pixel bound and RGB conversion), then through
    ``core.tf_decode.decode_image``, the decoder the train pipeline uses, so the same
    file gives the same pixels whether it was sharded or uploaded. An image of too many
    pixels (a decompression bomb: a few KB of PNG can claim 20000x20000) is refused from
    its header, before anything is decoded.

    Args:
        data: The file's bytes.
        max_pixels: The most pixels (width times height) accepted.

    Returns:
        uint8 array ``[64, 64, 3]``.

    Raises:
        BadImage: Not an image, not a supported format, truncated or corrupt.
        ImageTooLarge: More than ``max_pixels`` pixels.
    """
    stored = to_stored(data, max_pixels)
    import tensorflow as tf

    try:
        return _decoder()(stored.data).numpy()
    except tf.errors.OpError as exc:  # a JPEG Pillow reads but TensorFlow does not
        raise BadImage(f"undecodable image: {exc.message[:200]}") from exc


def top_k(
    probabilities: np.ndarray, k: int, class_names: ClassNames
) -> list[tuple[ClassEntry, float]]:
    """The ``k`` most probable classes of one image, most probable first.

    Args:
        probabilities: ``[classes]`` probabilities of one image.
        k: How many to keep; more than the number of classes keeps them all.
        class_names: One class per output.

    Returns:
        ``(class, probability)`` pairs; ties keep class order.
    """
    probs = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    order = np.argsort(-probs, kind="stable")[: max(0, k)]
    return [(class_names[i], float(probs[i])) for i in order]

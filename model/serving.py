"""Serving trained models: find one by id, load it once, classify batches of pixels.

A model is the ``.keras`` file a succeeded train job saved (``core.layout.model_path``); its
id is that job's id. ``ModelCache`` keeps the last few loaded, each with a ``tf.function``
of fixed input signature that runs the shared ``model.preprocessing.preprocess``, the
network and a softmax, so no request ever retraces a graph or calls ``Model.predict``.

Importing this module does not import TensorFlow (the API imports it at start-up); the
first model load or image decode does.
"""

from __future__ import annotations

import functools
import io
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from core import layout
from core.config import Settings
from core.jobs import Job, JobNotFound, JobState, JobStore
from core.names import is_valid_name
from model.config import INPUT_SHAPE

# What training accepts (worker/sharding.py); never formats whose Pillow plugins run
# external programs (EPS) or that TensorFlow cannot decode.
IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP")

ClassNames = list[dict[str, Any]]


class ServingError(Exception):
    """A request the serving layer cannot answer; the message is meant for the client."""


class ModelNotFound(ServingError):
    """The id names no succeeded train job, or its model file is missing."""


class NoModelYet(ServingError):
    """No train job has succeeded yet, so there is no default model."""


class ModelBroken(ServingError):
    """The model file exists but cannot be loaded (a fault of the server, not the client)."""


class BadImage(ServingError):
    """The upload is not an image in a supported format, or is truncated or corrupt."""


class ImageTooLarge(ServingError):
    """The image has more pixels than the limit (a decompression bomb, or just too big)."""


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model ready to classify: the network, its classes and its serving function.

    Attributes:
        id: The model id (its train job's id).
        network: The loaded ``keras.Model``.
        class_names: One ``{"index", "wnid", "label"}`` per output, in output order.
        serve: ``tf.function`` from uint8 pixels ``[batch, 64, 64, 3]`` to probabilities.
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
        return self.serve(pixels).numpy()


def load_model(model_id: str, path: Path) -> LoadedModel:
    """Loads a ``.keras`` model file and warms its serving function up (slow: seconds).

    Raises:
        ModelBroken: The file is not a loadable tinyres model.
    """
    import keras
    import tensorflow as tf

    import model.resnet  # noqa: F401  (registers the tinyres layers for deserialization)
    from model.preprocessing import preprocess

    try:
        network = keras.saving.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many kinds for a bad file
        raise ModelBroken(f"model {model_id} cannot be loaded: {type(exc).__name__}") from exc
    signature = tf.TensorSpec([None, *INPUT_SHAPE], tf.uint8, name="images")

    @tf.function(input_signature=[signature])
    def serve(images: tf.Tensor) -> tf.Tensor:
        logits = network(preprocess(images), training=False)
        # A mixed-precision network answers in bfloat16; probabilities are float32.
        return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)

    # Warm-up: the first call traces the graph; no request should pay for that.
    outputs = serve(np.zeros((1, *INPUT_SHAPE), np.uint8)).shape[-1]
    names = _class_names(network, outputs)
    return LoadedModel(id=model_id, network=network, class_names=names, serve=serve)


def _class_names(network: Any, outputs: int) -> ClassNames:
    """The classes saved in the model's config; numbered ones for a model saved without."""
    names = getattr(network, "class_names", None)
    if isinstance(names, list) and len(names) == outputs:
        return [
            {"index": i, "wnid": str(entry["wnid"]), "label": str(entry["label"])}
            for i, entry in enumerate(names)
        ]
    return [{"index": i, "wnid": str(i), "label": str(i)} for i in range(outputs)]


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


def find_model(store: JobStore, settings: Settings, model_id: str | None) -> tuple[str, Path]:
    """The id and file of model ``model_id``, or of the newest model when it is None.

    Raises:
        ModelNotFound: ``model_id`` is not a succeeded train job, or its file is missing.
        NoModelYet: ``model_id`` is None and no train job has produced a model yet.
    """
    if model_id is not None:
        if not is_valid_name(model_id):  # ids are names; anything else cannot be one
            raise ModelNotFound(f"no model with id {model_id[:80]!r}")
        try:
            job = store.get(model_id)
        except JobNotFound:
            raise ModelNotFound(f"no model with id {model_id!r}") from None
        if job.kind != "train" or job.state != JobState.SUCCEEDED:
            raise ModelNotFound(
                f"job {model_id} is not a model: a {job.kind} job in state {job.state.value}"
            )
        path = layout.model_path(settings, job.id)
        if not path.is_file():
            raise ModelNotFound(f"model {model_id} has no model file (deleted?)")
        return job.id, path
    succeeded = JobState.SUCCEEDED.value
    newest = store.list_jobs(kind="train", state=succeeded, limit=1)
    # Almost always the newest has its file; only when it was deleted look further back.
    for job in _chain(newest, lambda: store.list_jobs(kind="train", state=succeeded)[1:]):
        path = layout.model_path(settings, job.id)
        if path.is_file():
            return job.id, path
    raise NoModelYet("no model trained yet: no train job has succeeded")


def _chain(first: Sequence[Job], rest: Callable[[], Sequence[Job]]) -> Iterator[Job]:
    yield from first
    if first:
        yield from rest()


def get_model(
    cache: ModelCache, store: JobStore, settings: Settings, model_id: str | None
) -> LoadedModel:
    """The loaded model ``model_id`` (default: the newest), from the cache or loaded now.

    The default is looked up in the job store on every call, so a newly trained model is
    served as soon as its job succeeds.
    """
    found_id, path = find_model(store, settings, model_id)
    return cache.get(found_id, path)


@functools.cache
def _decoder() -> Callable[[Any], Any]:
    """``model.preprocessing.decode_image`` compiled once for scalar string inputs."""
    import tensorflow as tf

    from model.preprocessing import decode_image

    return tf.function(decode_image, input_signature=[tf.TensorSpec([], tf.string)])


def decode_upload(data: bytes, max_pixels: int) -> np.ndarray:
    """Checks an uploaded image file and decodes it to the network's input pixels.

    Pillow reads only the header first, so an image of too many pixels (a decompression
    bomb: a few KB of PNG can claim 20000x20000) is refused before anything is decoded.
    The pixels then come from ``model.preprocessing.decode_image``, the decoder training
    uses, so train and serve see the same pixels for the same file.

    Args:
        data: The file's bytes.
        max_pixels: The most pixels (width times height) accepted.

    Returns:
        uint8 array ``[64, 64, 3]``.

    Raises:
        BadImage: Not an image, not a supported format, truncated or corrupt.
        ImageTooLarge: More than ``max_pixels`` pixels.
    """
    if not data:
        raise BadImage("empty image file")
    width, height = _image_size(data)
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"image of {width}x{height} pixels is over the limit of {max_pixels} pixels"
        )
    import tensorflow as tf

    try:
        return _decoder()(data).numpy()
    except tf.errors.OpError:
        pass
    # TensorFlow refuses a few valid files (CMYK JPEGs, for one); training converts those
    # with Pillow, and so does this. A truncated file fails here too.
    return _decode_with_pillow(data)


def _image_size(data: bytes) -> tuple[int, int]:
    """Width and height from the header alone (nothing decoded yet)."""
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
            return image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"image over the pixel limit: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise BadImage("not an image, or not a JPEG, PNG, GIF, BMP or WebP one") from exc
    except Exception as exc:  # Pillow's plugins raise many kinds for a broken header
        raise BadImage(f"unreadable image header: {type(exc).__name__}") from exc


def _decode_with_pillow(data: bytes) -> np.ndarray:
    from model.preprocessing import resize_to_input

    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
            image.load()
            # Via RGBA, so palette transparency is read as alpha (then dropped).
            rgba = image.convert("RGBA") if image.mode in ("P", "PA") else image
            pixels = np.asarray(rgba.convert("RGB"), dtype=np.uint8)
    except Exception as exc:
        raise BadImage(f"undecodable image (truncated or corrupt): {exc}") from exc
    return resize_to_input(pixels).numpy()


def top_k(probabilities: np.ndarray, k: int, class_names: ClassNames) -> list[dict[str, Any]]:
    """The ``k`` most probable classes of one image, most probable first.

    Args:
        probabilities: ``[classes]`` probabilities of one image.
        k: How many to keep; more than the number of classes keeps them all.
        class_names: One ``{"index", "wnid", "label"}`` per class.

    Returns:
        ``[{"class_index", "wnid", "label", "probability"}, ...]``; ties keep class order.
    """
    probs = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    order = np.argsort(-probs, kind="stable")[: max(0, k)]
    return [
        {
            "class_index": int(i),
            "wnid": class_names[i]["wnid"],
            "label": class_names[i]["label"],
            "probability": float(probs[i]),
        }
        for i in order
    ]

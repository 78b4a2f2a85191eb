"""Building each export artifact with Keras' own ``model.export``.

What is exported is the computation ``model.serving`` serves (``LoadedModel.serve``: uint8
pixels ``[N, 64, 64, 3]`` to float32 probabilities), wrapped in a small Keras model, so an
artifact preprocesses and applies the softmax exactly as ``/predict`` does, whether the
preprocessing runs before the network or inside it. ``model.export`` then calls the
converters Keras chose: its ``ExportArchive`` for a SavedModel, tf2onnx for ONNX, and the
TensorFlow Lite converter (through a SavedModel) for LiteRT.

A model trained under mixed precision (bfloat16) is served, and so exported, in float32
(``model.serving.as_float32``): onnxruntime has no bfloat16 convolutions and LiteRT no
bfloat16 kernels.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import keras
import tensorflow as tf

from model.config import INPUT_SHAPE
from model.serving import LoadedModel

IMAGES = tf.TensorSpec([None, *INPUT_SHAPE], tf.uint8, name="images")
SAVED_MODEL_FOLDER = "saved_model"  # the folder a saved_model zip unpacks to


class Probabilities(keras.Model):
    """uint8 images to class probabilities: a served model as a Keras model to export."""

    def __init__(self, served: LoadedModel) -> None:
        super().__init__(name="tinyres_probabilities")
        self.network = served.network  # tracked, so the export carries its weights
        self._serve = served.serve
        self(tf.zeros([1, *INPUT_SHAPE], tf.uint8))  # built: Keras exports built models only

    def call(self, images: tf.Tensor) -> tf.Tensor:
        return self._serve(images)


def export_saved_model(model: Probabilities, path: Path) -> None:
    """A SavedModel (endpoints ``serve`` and ``serving_default``), zipped under
    ``saved_model/``."""
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        folder = Path(scratch) / SAVED_MODEL_FOLDER
        model.export(str(folder), format="tf_saved_model", input_signature=[IMAGES], verbose=False)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(folder.rglob("*")):
                if file.is_file():
                    archive.write(file, file.relative_to(scratch).as_posix())


def export_onnx(model: Probabilities, path: Path) -> None:
    """An ONNX graph, converted by tf2onnx (Keras' choice), input ``images``."""
    with warnings.catch_warnings():
        # Keras patches tf2onnx for NumPy 2 by setting np.object, which NumPy warns about.
        warnings.filterwarnings("ignore", message=".*np.object.*", category=FutureWarning)
        model.export(str(path), format="onnx", input_signature=[IMAGES], verbose=False)


def export_litert(model: Probabilities, path: Path) -> None:
    """A ``.tflite`` flatbuffer, converted by the TensorFlow Lite converter."""
    model.export(str(path), format="litert", input_signature=[IMAGES], verbose=False)


EXPORTERS: dict[str, Callable[[Probabilities, Path], None]] = {
    "saved_model": export_saved_model,
    "onnx": export_onnx,
    "litert": export_litert,
}


def build_artifact(fmt: str, served: LoadedModel, path: Path) -> None:
    """Write the ``fmt`` artifact of ``served`` to ``path``."""
    EXPORTERS[fmt](Probabilities(served), path)


def unpack_saved_model(path: Path, folder: Path) -> Path:
    """Unzip a saved_model artifact into ``folder``; returns the SavedModel's folder."""
    shutil.rmtree(folder, ignore_errors=True)
    with zipfile.ZipFile(path) as archive:
        archive.extractall(folder)
    return folder / SAVED_MODEL_FOLDER

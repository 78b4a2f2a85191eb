"""Checking an artifact in its own runtime: its top-1 agreement with the served model.

Each artifact is run by the runtime its users will run it with (TensorFlow for a
SavedModel, onnxruntime for ONNX, the LiteRT interpreter for ``.tflite``) on the model's
dataset's val split, read a batch at a time from the shards and decoded as serving
decodes (``core.tf_decode.decode_image``), never held whole in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from core.manifest import load_manifest
from worker.exports.artifacts import unpack_saved_model
from worker.exports.formats import MIN_AGREEMENT
from worker.runner import JobFailed
from worker.shard_reader import AUTOTUNE, HoldOut, count_held_out, decode_batches, holdout_threshold
from worker.shard_reader import records as shard_records
from worker.sharding.records import tf_compression

Predict = Callable[[np.ndarray], np.ndarray]
"""uint8 images ``[N, 64, 64, 3]`` to probabilities ``[N, classes]``."""

CHECK_BATCH = 256
# The hold-out training validates on when a dataset has no val split
# (``worker.reader.make_datasets``' default ``val_fraction``).
VAL_FRACTION = 0.1


class ExportCheckFailed(JobFailed):
    """The artifact does not answer as the served model does; it is not offered."""


@dataclass(frozen=True)
class ValImages:
    """The val split of a dataset: its size and a fresh pass over it per ``batches()``."""

    count: int
    batches: Callable[[], Iterator[np.ndarray]]


def val_images(dataset_dir: Path, batch_size: int = CHECK_BATCH) -> ValImages:
    """The val split of the sharded dataset at ``dataset_dir`` (its held-out train
    images when it has no val split), as uint8 batches."""
    manifest = load_manifest(dataset_dir)
    compression = tf_compression(manifest.compression)
    val = manifest.split("val")
    holdout: HoldOut | None = None
    split = "val"
    if val is None or val.count == 0:
        split, holdout = "train", HoldOut(holdout_threshold(VAL_FRACTION), validation=True)
    files = [str(dataset_dir / shard.file) for shard in manifest.splits[split].shards]
    if holdout is None:
        count = manifest.splits[split].count
    else:
        count = count_held_out(files, compression, holdout.threshold)
    parallel = {"num_parallel_calls": AUTOTUNE, "deterministic": True}

    def batches() -> Iterator[np.ndarray]:
        stream = shard_records(files, compression)
        for images, _ in decode_batches(stream, holdout, batch_size, parallel):
            yield images.numpy()

    return ValImages(count=count, batches=batches)


def saved_model_runtime(path: Path, scratch: Path) -> Predict:
    """The zipped SavedModel at ``path``, unpacked into ``scratch`` and loaded by TensorFlow."""
    loaded = tf.saved_model.load(str(unpack_saved_model(path, scratch)))
    return lambda images: loaded.serve(tf.constant(images)).numpy()


def onnx_runtime(path: Path, scratch: Path) -> Predict:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda images: np.asarray(session.run(None, {name: images})[0])


def litert_runtime(path: Path, scratch: Path) -> Predict:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner()

    def predict(images: np.ndarray) -> np.ndarray:
        (outputs,) = runner(images=images).values()
        return np.asarray(outputs)

    return predict


RUNTIME_LOADERS: dict[str, Callable[[Path, Path], Predict]] = {
    "saved_model": saved_model_runtime,
    "onnx": onnx_runtime,
    "litert": litert_runtime,
}


def open_in_runtime(fmt: str, path: Path, scratch: Path) -> Predict:
    """The artifact at ``path`` loaded by its runtime; a failure to load is the check's."""
    try:
        return RUNTIME_LOADERS[fmt](path, scratch)
    except Exception as exc:
        raise ExportCheckFailed(
            f"the {fmt} export cannot be loaded by its runtime: {_reason(exc)}"
        ) from exc


def _reason(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:500] if lines else 'no message'}"


@dataclass(frozen=True)
class Agreement:
    matches: int
    images: int

    @property
    def fraction(self) -> float:
        return self.matches / self.images if self.images else 0.0


def measure_agreement(
    artifact: Predict,
    served: Predict,
    batches: Iterator[np.ndarray],
    on_batch: Callable[[int], None] = lambda seen: None,
) -> Agreement:
    """How many images the artifact and the served model rank the same class first.

    Args:
        on_batch: Called after each batch with the images seen so far (progress, and
            the place to check for cancellation).

    Raises:
        ExportCheckFailed: The artifact fails to run, or answers another shape.
    """
    matches = seen = 0
    for images in batches:
        expected = served(images)
        try:
            answered = artifact(images)
        except Exception as exc:
            raise ExportCheckFailed(
                f"the export fails on a batch of {len(images)} images: {_reason(exc)}"
            ) from exc
        if answered.shape != expected.shape:
            raise ExportCheckFailed(
                f"the export answers shape {list(answered.shape)} where the served model "
                f"answers {list(expected.shape)} for the same {len(images)} images"
            )
        matches += int(np.sum(np.argmax(answered, -1) == np.argmax(expected, -1)))
        seen += len(images)
        on_batch(seen)
    return Agreement(matches=matches, images=seen)


def require_agreement(fmt: str, agreement: Agreement) -> None:
    """Raise unless the artifact agrees with the served model on ``MIN_AGREEMENT`` of the
    val split."""
    if agreement.images == 0:
        raise ExportCheckFailed(
            f"the {fmt} export cannot be checked: its model's dataset has no val images"
        )
    if agreement.fraction < MIN_AGREEMENT:
        raise ExportCheckFailed(
            f"the {fmt} export ranks the served model's top class first on only "
            f"{agreement.matches} of {agreement.images} val images (agreement "
            f"{agreement.fraction:.4f}, at least {MIN_AGREEMENT} needed); it is not offered"
        )

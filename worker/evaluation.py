"""Evaluating a model on a split of a sharded dataset, streaming, through the serving network.

Why it agrees with ``POST /predict``: a shard stores what ``core.images.to_stored`` made of
each source file, and ``/predict`` passes an upload through the same ``to_stored`` and then
``core.tf_decode.decode_image``; here the stored bytes go through that same
``decode_image``, and the uint8 pixels through ``LoadedModel.probabilities``, the serving
function ``/predict`` calls. The predicted class is the first of the highest probability,
as ``model.serving.top_k`` ranks it, so ``top1`` is exactly the share ``/predict`` gets right.

Why it fits in memory for any split: records are read, decoded and classified a batch at a
time (``tf.data``, decoding in parallel with the network); what is kept is a
``classes x classes`` confusion matrix, three running sums and a bounded heap of the worst
misclassified files (``EvaluationMetrics``).
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Sequence
from os import PathLike, fspath

import numpy as np
import tensorflow as tf

from core.evaluation import (
    ClassMetrics,
    ConfusedPair,
    Confusion,
    Evaluation,
    MacroAverages,
    SplitName,
    WorstFile,
    class_mismatch,
)
from core.manifest import ClassEntry, Manifest, load_manifest
from core.tf_decode import decode_image
from model.config import IMAGE_SIZE
from model.serving import LoadedModel
from worker.shard_reader import (
    AUTOTUNE,
    READ_FIELDS,
    HoldOut,
    count_held_out,
    holdout_threshold,
    records,
)
from worker.sharding.records import parse_records, tf_compression

log = logging.getLogger(__name__)

BATCH_SIZE = 128  # the train job's default batch: what its validation pass uses
WORST_FILES = 50
MOST_CONFUSED = 50
TOP_K = 5
LOSS_EPSILON = 1e-7  # as Keras clips probabilities in its cross-entropy
# The share of train records held out when a dataset has no val split: what
# ``worker.training`` uses (``make_datasets``' default), so "val" means the same images.
VAL_FRACTION = 0.1

_IMAGE_SPEC = tf.TensorSpec([IMAGE_SIZE, IMAGE_SIZE, 3], tf.uint8)

Progress = Callable[[int, int], None]


class EvaluationError(ValueError):
    """The evaluation cannot be made (an empty split, classes that differ from the model's)."""


class EvaluationMetrics:
    """Top-1, top-5, loss, the confusion matrix and the worst files, updated batch by batch."""

    def __init__(self, classes: Sequence[ClassEntry], worst_limit: int = WORST_FILES) -> None:
        self.classes = list(classes)
        size = len(self.classes)
        self.confusion = np.zeros((size, size), np.int64)
        self.count = 0
        self.top1_hits = 0
        self.top5_hits = 0
        self.loss_sum = 0.0
        self._worst_limit = worst_limit
        # Max-heap (by negated key) of the lowest true-class probabilities seen so far.
        self._worst: list[tuple[float, str, WorstFile]] = []

    def update(self, probabilities: np.ndarray, labels: np.ndarray, files: Sequence[str]) -> None:
        """Add one batch: ``[batch, classes]`` probabilities, true indices and file names."""
        probs = np.asarray(probabilities, np.float64)
        labels = np.asarray(labels, np.int64)
        size = len(self.classes)
        rows = np.arange(len(labels))
        true_p = probs[rows, labels]
        # The true class's rank as model.serving.top_k orders (ties keep class order).
        higher = (probs > true_p[:, None]).sum(axis=1)
        tied_before = ((probs == true_p[:, None]) & (np.arange(size) < labels[:, None])).sum(axis=1)
        rank = higher + tied_before
        predicted = np.argmax(probs, axis=1)  # the first of the highest: rank 0
        self.confusion += np.bincount(labels * size + predicted, minlength=size * size).reshape(
            size, size
        )
        self.count += len(labels)
        self.top1_hits += int((rank == 0).sum())
        self.top5_hits += int((rank < min(TOP_K, size)).sum())
        self.loss_sum += float(-np.log(np.clip(true_p, LOSS_EPSILON, 1.0)).sum())
        for i in np.flatnonzero(predicted != labels):
            self._offer_worst(files[int(i)], int(labels[i]), int(predicted[i]), probs[i])

    def _offer_worst(self, file: str, label: int, predicted: int, probs: np.ndarray) -> None:
        key = (-float(probs[label]), file)  # ties: by file name, whatever the read order
        if len(self._worst) >= self._worst_limit and key <= self._worst[0][:2]:
            return
        entry = WorstFile(
            file=file,
            true=self.classes[label].wnid,
            predicted=self.classes[predicted].wnid,
            probability=float(probs[label]),
            predicted_probability=float(probs[predicted]),
        )
        if len(self._worst) < self._worst_limit:
            heapq.heappush(self._worst, (*key, entry))
        else:
            heapq.heapreplace(self._worst, (*key, entry))

    def result(self, model: str, dataset: str, split: str) -> Evaluation:
        if self.count == 0:
            raise EvaluationError(f"split {split!r} of dataset {dataset!r} holds no images")
        matrix = self.confusion
        hits = np.diag(matrix).astype(np.float64)
        support = matrix.sum(axis=1)
        predicted = matrix.sum(axis=0)
        precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
        recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
        total = precision + recall
        f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(hits), where=total > 0)
        per_class = [
            ClassMetrics(
                class_index=entry.index,
                wnid=entry.wnid,
                label=entry.label,
                precision=float(precision[i]),
                recall=float(recall[i]),
                f1=float(f1[i]),
                support=int(support[i]),
            )
            for i, entry in enumerate(self.classes)
        ]
        wnids = [entry.wnid for entry in self.classes]
        return Evaluation(
            model=model,
            dataset=dataset,
            split=split,
            count=self.count,
            top1=self.top1_hits / self.count,
            top5=self.top5_hits / self.count,
            loss=self.loss_sum / self.count,
            macro=MacroAverages(
                precision=float(precision.mean()), recall=float(recall.mean()), f1=float(f1.mean())
            ),
            per_class=per_class,
            confusion=Confusion(wnids=wnids, matrix=matrix.tolist()),
            most_confused=most_confused(matrix, wnids),
            worst=[entry for _, _, entry in sorted(self._worst, key=lambda e: (-e[0], e[1]))],
        )


def most_confused(
    matrix: np.ndarray, wnids: Sequence[str], limit: int = MOST_CONFUSED
) -> list[ConfusedPair]:
    """The largest off-diagonal cells, largest first (ties: true, then predicted index)."""
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    cells = np.flatnonzero(off)
    order = sorted(cells, key=lambda c: (-off.flat[c], c))[:limit]
    size = len(wnids)
    return [
        ConfusedPair(
            true=wnids[int(c) // size], predicted=wnids[int(c) % size], count=int(off.flat[c])
        )
        for c in order
    ]


def split_batches(
    dataset_dir: str | PathLike[str], split: SplitName, batch_size: int = BATCH_SIZE
) -> tuple[Manifest, tf.data.Dataset, int]:
    """The manifest, the batches ``(uint8 images, int32 labels, filenames)`` of one split,
    and how many images it holds.

    A dataset without a val split splits its train records by training's hold-out rule.
    """
    folder = fspath(dataset_dir).rstrip("/")
    manifest = load_manifest(folder)
    compression = tf_compression(manifest.compression)
    val = manifest.split("val")
    holdout: HoldOut | None = None
    if val is not None and val.count > 0:
        if manifest.split(split) is None:
            raise EvaluationError(f"dataset {manifest.name!r} has no {split} split")
        files = _shard_paths(folder, manifest, split)
        count = manifest.splits[split].count
    else:
        files = _shard_paths(folder, manifest, "train")
        threshold = holdout_threshold(VAL_FRACTION)
        holdout = HoldOut(threshold, validation=split == "val")
        held = count_held_out(files, compression, threshold)
        count = held if split == "val" else manifest.splits["train"].count - held
    if count == 0 or not files:
        raise EvaluationError(f"split {split!r} of dataset {manifest.name!r} holds no images")

    def parse_batch(batch: tf.Tensor) -> dict[str, tf.Tensor]:
        fields = parse_records(batch, READ_FIELDS)
        if holdout is None:
            return fields
        keep = holdout.keep(fields["filename"])
        return {name: tf.boolean_mask(values, keep) for name, values in fields.items()}

    def decode_batch(fields: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        images = tf.map_fn(decode_image, fields["image"], fn_output_signature=_IMAGE_SPEC)
        return images, tf.cast(fields["label"], tf.int32), fields["filename"]

    parallel = {"num_parallel_calls": AUTOTUNE, "deterministic": False}
    dataset = records(files, compression, deterministic=False).batch(batch_size)
    dataset = dataset.map(parse_batch, **parallel)
    if holdout is not None:
        dataset = dataset.rebatch(batch_size)  # the hold-out left batches short
    dataset = dataset.map(decode_batch, **parallel).prefetch(AUTOTUNE)
    return manifest, dataset, count


def _shard_paths(folder: str, manifest: Manifest, split: str) -> list[str]:
    return [f"{folder}/{shard.file}" for shard in manifest.splits[split].shards]


def check_classes(model: LoadedModel, classes: Sequence[ClassEntry], dataset: str) -> None:
    """Refuse a dataset whose classes are not the model's outputs, wnid for wnid, in order."""
    reason = class_mismatch(
        [entry.wnid for entry in model.class_names], [entry.wnid for entry in classes]
    )
    if reason is not None:
        raise EvaluationError(
            f"dataset {dataset!r} has other classes than model {model.id} (by wnid): {reason}"
        )


def evaluate(
    model: LoadedModel,
    dataset_dir: str | PathLike[str],
    split: SplitName = "val",
    *,
    batch_size: int = BATCH_SIZE,
    on_batch: Progress | None = None,
) -> Evaluation:
    """Evaluate ``model`` on one split of the dataset at ``dataset_dir``.

    Args:
        on_batch: Called with (images done, images in the split) after every batch; it
            may raise to stop (a cancelled job).

    Raises:
        EvaluationError: The split is empty, or the dataset's classes are not the model's.
    """
    manifest, batches, total = split_batches(dataset_dir, split, batch_size)
    check_classes(model, manifest.classes, manifest.name)
    metrics = EvaluationMetrics(model.class_names)
    for images, labels, filenames in batches:
        probabilities = model.probabilities(images.numpy())
        names = [name.decode("utf-8", "replace") for name in filenames.numpy()]
        metrics.update(probabilities, labels.numpy(), names)
        if on_batch is not None:
            on_batch(metrics.count, total)
    return metrics.result(model.id, manifest.name, split)

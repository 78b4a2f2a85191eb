"""Sharding a source dataset into TFRecord files: plan, write each shard, finalize.

The work is split so that every step can be repeated safely (jobs may be redelivered or
killed at any moment):

1. ``plan`` scans the source and deals its images into shards, in a seeded random order,
   writing ``<dataset>/.staging/plan.json``. Planning again with the same arguments
   returns the stored plan.
2. ``write_shard`` writes one shard (a "part") to a temporary file, renames it into place,
   then records a small sidecar ``.staging/<shard>.json``. A part whose shard and sidecar
   both exist is not rewritten; a part killed mid-way leaves only a ``*.tmp-*`` file.
3. ``finalize`` writes ``manifest.json`` last, atomically. A dataset exists iff its
   manifest does, so a crashed job never leaves anything that looks complete.

Shard and manifest files go through ``tf.io.gfile`` only, so the data root may be an
object-store URL; the source is read with plain Python I/O.

What a record holds (a ``tf.train.Example``): ``image`` (the encoded image), ``label``
(int64 class index), ``wnid``, ``filename`` (path relative to the source layout's root)
and ``format`` (``b"jpeg"`` or ``b"png"``). Storage choices:

* RGB JPEGs (nearly every image of Tiny ImageNet) are stored byte for byte: no re-encoding
  loss, shards no larger than the source (gzip even shrinks the repeated JPEG headers), and
  decoding a record gives exactly the source's pixels. The write-up's preprocessed float32
  tensors were ~10x larger even gzipped (``bench/shard_bench.py``), and slower to write;
  preprocessing runs in the reader instead. Shards only ever hold encoded images.
* Every other image (grayscale, CMYK, palette, RGBA or 16-bit; PNG, BMP, GIF, WebP) is
  converted to 8-bit RGB with Pillow and stored as lossless PNG, so decoding a record gives
  exactly the converted pixels, and the reader only ever sees 3-channel images. Alpha is
  dropped (as ``tf.io.decode_image(channels=3)`` does for uploads at prediction time);
  16-bit samples are scaled to 8 bits.
* Images are never resized here: the reader resizes with ``model.preprocessing``, the same
  code that resizes uploads for prediction, so train and serve cannot disagree. Tiny
  ImageNet is 64x64 already.
* Every image is fully decoded with Pillow before it is stored; a file that is empty,
  truncated, not an image, or over ``MAX_SOURCE_PIXELS`` is skipped and listed with the
  reason, never fatal. Only a source where nothing is readable fails the job.

Shard assignment: in each split, every class's images are shuffled (numpy
``Generator(seed)``) and dealt round-robin over the shards, so each shard holds every class
(when the class has at least one image per shard) and shard sizes differ by at most one;
each shard's records are then in random order. The train split gets ``num_shards`` shards
(fewer when it has fewer images); the val split gets shards of about the train shards'
size: ``ceil(n_val * train_shards / n_train)``, between 1 and ``num_shards``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import math
import posixpath
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from os import PathLike, fspath
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from PIL import Image, UnidentifiedImageError

from model.config import IMAGE_SIZE
from worker.sources import SourceError, SourceFiles, scan_source

MANIFEST = "manifest.json"
STAGING = ".staging"
PLAN = "plan.json"
PLAN_VERSION = 1
COMPRESSIONS = ("GZIP", "NONE")
MAX_SHARDS = 10_000
# Decoding is bounded explicitly instead of through Pillow's process-wide
# Image.MAX_IMAGE_PIXELS, which the prediction service sets for its own purpose.
MAX_SOURCE_PIXELS = 40_000_000
# Formats Pillow may open: those of the accepted extensions (camera JPEGs that Pillow opens
# as "MPO" come through "JPEG"). Never EPS and the like, which run external programs.
PILLOW_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP")
PROGRESS_EVERY = 100
TEMP_MARK = ".tmp-"

Progress = Callable[[int, int], None]
StopCheck = Callable[[], bool]


class ShardingStopped(Exception):
    """``should_stop`` asked a shard writer to stop; its temporary file is removed."""


class DatasetExistsError(ValueError):
    """A finished dataset (one with a manifest) is already at the target folder."""


class DatasetNotFoundError(LookupError):
    """No manifest at the dataset folder."""


class IncompleteDatasetError(RuntimeError):
    """``finalize`` was called before every part was written."""


class BadImage(ValueError):
    """A source file that cannot be stored; the message is the reason."""


@dataclass
class Plan:
    """Which source image goes into which shard. JSON-safe, so a task can reload it.

    ``shards[split][i]`` lists the records of shard ``i`` as ``[key, label_index]`` pairs,
    ``key`` being where the image is read in the source (see ``worker.sources.Item``).
    """

    name: str
    dataset_dir: str
    source: str
    source_path: str
    layout: str
    root: str
    num_shards: int
    compression: str
    seed: int
    classes: list[dict[str, Any]]
    shards: dict[str, list[list[list[Any]]]]
    version: int = PLAN_VERSION
    plan_id: str = field(default="")

    def parts(self) -> list[tuple[str, int]]:
        """Every (split, shard index) to write; each is one task."""
        return [(split, i) for split, shards in self.shards.items() for i in range(len(shards))]

    def shard_file(self, split: str, index: int) -> str:
        return shard_file_name(split, index, len(self.shards[split]))

    def records(self, split: str, index: int) -> list[list[Any]]:
        return self.shards[split][index]

    def filename(self, key: str) -> str:
        """The path of a source key relative to the layout's root."""
        return key[len(self.root) + 1 :] if self.root else key

    @property
    def total_images(self) -> int:
        return sum(len(records) for shards in self.shards.values() for records in shards)

    def params(self) -> dict[str, Any]:
        """What identifies a plan request: planning again with these reuses the plan."""
        return {
            "source": self.source,
            "source_path": self.source_path,
            "num_shards": self.num_shards,
            "compression": self.compression,
            "seed": self.seed,
        }

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Plan:
        return cls(**json.loads(text))


def shard_file_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


# --------------------------------------------------------------------------- planning


def plan(
    source_path: str | PathLike[str],
    dataset_dir: str | PathLike[str],
    *,
    num_shards: int = 10,
    compression: str = "GZIP",
    seed: int = 0,
    source_label: str | None = None,
) -> Plan:
    """Scan the source and decide every shard's content; store the plan in staging.

    Args:
        source_path: The source folder or zip (already checked to be inside the data root).
        dataset_dir: The dataset's folder (created); its base name is the dataset's name.
        num_shards: Shards of the train split.
        compression: "GZIP" or "NONE".
        seed: Seeds the shuffle: the same seed gives the same shards.
        source_label: How the manifest names the source (the client's relative path);
            defaults to the source's base name.

    Returns:
        The plan; the stored one when a plan with the same arguments exists.

    Raises:
        ValueError: Bad ``num_shards`` or ``compression``.
        DatasetExistsError: The dataset is already finished.
        SourceError: The source is missing, unusable or holds no images.
    """
    _check_args(num_shards, compression)
    dataset_dir = fspath(dataset_dir).rstrip("/")
    source_path = str(Path(source_path).resolve())
    label = source_label if source_label is not None else Path(source_path).name
    if tf.io.gfile.exists(_join(dataset_dir, MANIFEST)):
        raise DatasetExistsError(f"dataset {posixpath.basename(dataset_dir)} already exists")
    wanted = {
        "source": label,
        "source_path": source_path,
        "num_shards": num_shards,
        "compression": compression,
        "seed": seed,
    }
    stored = _load_plan(dataset_dir)
    if stored is not None and stored.params() == wanted:
        return stored
    if stored is not None:
        _discard_parts(stored)  # a different request: nothing of the old one may be reused
    new = _make_plan(source_path, dataset_dir, num_shards, compression, seed, label)
    tf.io.gfile.makedirs(_join(dataset_dir, STAGING))
    _write_text_atomic(_join(dataset_dir, STAGING, PLAN), new.to_json())
    return new


def load_plan(dataset_dir: str | PathLike[str]) -> Plan:
    """The stored plan of a dataset being sharded (for part tasks)."""
    stored = _load_plan(fspath(dataset_dir).rstrip("/"))
    if stored is None:
        raise DatasetNotFoundError(f"no sharding plan at {dataset_dir}")
    return stored


def _check_args(num_shards: int, compression: str) -> None:
    if not isinstance(num_shards, int) or not 1 <= num_shards <= MAX_SHARDS:
        raise ValueError(f"num_shards must be 1..{MAX_SHARDS}. Received: num_shards={num_shards}")
    if compression not in COMPRESSIONS:
        raise ValueError(
            f"compression must be one of {COMPRESSIONS}. Received: compression={compression!r}"
        )


def _make_plan(
    source_path: str, dataset_dir: str, num_shards: int, compression: str, seed: int, label: str
) -> Plan:
    with scan_source(Path(source_path)) as source:
        splits = {split: items for split, items in source.splits.items() if items}
        n_train = len(splits.get("train", []))
        if n_train == 0:
            raise SourceError(f"source {label} has no training images")
        train_shards = min(num_shards, n_train)
        shards: dict[str, list[list[list[Any]]]] = {}
        for number, (split, items) in enumerate(splits.items()):
            if split == "train":
                count = train_shards
            else:
                count = math.ceil(len(items) * train_shards / n_train)
                count = max(1, min(count, num_shards, len(items)))
            rng = np.random.default_rng([seed, number])
            labels = np.array([item.label_index for item in items], dtype=np.int64)
            keys = [item.key for item in items]
            shards[split] = [
                [[keys[i], int(labels[i])] for i in members] for members in deal(labels, count, rng)
            ]
        new = Plan(
            name=posixpath.basename(dataset_dir),
            dataset_dir=dataset_dir,
            source=label,
            source_path=source_path,
            layout=source.layout,
            root=source.root,
            num_shards=num_shards,
            compression=compression,
            seed=seed,
            classes=[asdict(info) for info in source.classes],
            shards=shards,
        )
    new.plan_id = hashlib.sha256(new.to_json().encode()).hexdigest()[:16]
    return new


def deal(labels: np.ndarray, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Split item indices into ``count`` shards: stratified by label, random order.

    Items are ranked by a random permutation, grouped by label (in rank order within a
    label), and dealt round-robin, so every shard gets ``floor`` or ``ceil`` of
    ``n_label / count`` of every label. Each shard lists its items in rank order.
    """
    rank = np.empty(len(labels), dtype=np.int64)
    rank[rng.permutation(len(labels))] = np.arange(len(labels))
    by_label = np.lexsort((rank, labels))
    shard_of = np.empty(len(labels), dtype=np.int64)
    shard_of[by_label] = np.arange(len(labels)) % count
    shards = []
    for index in range(count):
        members = np.flatnonzero(shard_of == index)
        shards.append(members[np.argsort(rank[members], kind="stable")])
    return shards


def _load_plan(dataset_dir: str) -> Plan | None:
    path = _join(dataset_dir, STAGING, PLAN)
    if not tf.io.gfile.exists(path):
        return None
    try:
        stored = Plan.from_json(_read_text(path))
    except (ValueError, TypeError):
        return None  # unreadable or from another version: plan afresh
    return stored if stored.version == PLAN_VERSION else None


def _discard_parts(old: Plan) -> None:
    for split, index in old.parts():
        for path in (
            _join(old.dataset_dir, old.shard_file(split, index)),
            _sidecar_path(old, split, index),
        ):
            if tf.io.gfile.exists(path):
                tf.io.gfile.remove(path)


# --------------------------------------------------------------------------- one shard


def write_shard(
    plan: Plan,
    split: str,
    index: int,
    *,
    on_progress: Progress | None = None,
    should_stop: StopCheck | None = None,
) -> dict[str, Any]:
    """Write shard ``index`` of ``split``; return its info (restartable, idempotent).

    Args:
        plan: From ``plan``/``load_plan``.
        split, index: One of ``plan.parts()``.
        on_progress: Called as ``on_progress(done, total)`` every ``PROGRESS_EVERY`` images
            of this shard, and at its end.
        should_stop: Checked between images; when it returns True the temporary file is
            removed and ``ShardingStopped`` is raised.

    Returns:
        ``{"split", "index", "file", "records", "bytes", "per_class": {wnid: n},
        "skipped": [{"file", "reason"}], "plan_id"}``.
    """
    final = _join(plan.dataset_dir, plan.shard_file(split, index))
    done = _load_info(plan, split, index)
    if done is not None and tf.io.gfile.exists(final):
        return done
    records = plan.records(split, index)
    temp = f"{final}{TEMP_MARK}{uuid.uuid4().hex}"
    wnids = [info["wnid"] for info in plan.classes]
    per_class: Counter[str] = Counter()
    skipped: list[dict[str, str]] = []
    options = tf.io.TFRecordOptions(compression_type=tf_compression(plan.compression))
    try:
        with (
            SourceFiles(Path(plan.source_path)) as files,
            tf.io.TFRecordWriter(temp, options=options) as writer,
        ):
            for done_count, (key, label) in enumerate(records, start=1):
                if should_stop is not None and should_stop():
                    raise ShardingStopped(f"stopped while writing {plan.shard_file(split, index)}")
                filename = plan.filename(key)
                try:
                    encoded, fmt = prepare_image(read_source(files, key))
                except BadImage as exc:
                    skipped.append({"file": filename, "reason": str(exc)})
                else:
                    writer.write(make_example(encoded, label, wnids[label], filename, fmt))
                    per_class[wnids[label]] += 1
                if on_progress is not None and (
                    done_count % PROGRESS_EVERY == 0 or done_count == len(records)
                ):
                    on_progress(done_count, len(records))
    except BaseException:
        _remove_quietly(temp)
        raise
    tf.io.gfile.rename(temp, final, overwrite=True)
    info = {
        "split": split,
        "index": index,
        "file": plan.shard_file(split, index),
        "records": sum(per_class.values()),
        "bytes": tf.io.gfile.stat(final).length,
        "per_class": dict(sorted(per_class.items())),
        "skipped": skipped,
        "plan_id": plan.plan_id,
    }
    tf.io.gfile.makedirs(_join(plan.dataset_dir, STAGING))
    _write_text_atomic(_sidecar_path(plan, split, index), json.dumps(info))
    return info


def read_source(files: SourceFiles, key: str) -> bytes:
    """The bytes of one source file; a file that vanished or cannot be read is a BadImage."""
    try:
        return files.read(key)
    except SourceError:
        raise  # the source as a whole is gone or broken: not one bad file
    except KeyError as exc:
        raise BadImage("missing from the zip") from exc
    except (OSError, RuntimeError, ValueError) as exc:  # zipfile raises all three
        raise BadImage(f"unreadable file: {_reason(exc)}") from exc


def tf_compression(compression: str) -> str:
    """The ``compression_type`` string TFRecord readers and writers take."""
    return "" if compression == "NONE" else compression


def prepare_image(data: bytes) -> tuple[bytes, str]:
    """Check that ``data`` is a whole image and choose what to store.

    Returns:
        ``(bytes to store, format)``: the bytes as they are for an RGB JPEG, else the
        image converted to RGB and encoded as PNG.

    Raises:
        BadImage: The data is empty, not an image, truncated, corrupt or too large.
    """
    if not data:
        raise BadImage("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=PILLOW_FORMATS) as image:
                width, height = image.size
                if width * height > MAX_SOURCE_PIXELS:
                    raise BadImage(f"too large: {width}x{height} pixels")
                image.load()
                if image.format == "JPEG" and image.mode == "RGB":
                    return data, "jpeg"
                rgb = to_rgb(image)
    except BadImage:
        raise
    except UnidentifiedImageError as exc:
        raise BadImage("not an image (or an unsupported format)") from exc
    except Exception as exc:  # Pillow's decoders raise many kinds; any of them means "bad"
        raise BadImage(f"unreadable image: {_reason(exc)}") from exc
    buffer = io.BytesIO()
    rgb.save(buffer, format="PNG")
    return buffer.getvalue(), "png"


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB pixels of any Pillow image; 16-bit samples are scaled, alpha dropped."""
    if image.mode.startswith("I"):  # 16-bit grayscale ("I;16", or "I" from older Pillow)
        pixels = np.asarray(image, dtype=np.float64) / 257.0
        gray = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if image.mode in ("P", "PA"):
        # Via RGBA, so palette transparency is read as alpha (then dropped) without warnings.
        return image.convert("RGBA").convert("RGB")
    return image.convert("RGB")


def make_example(image: bytes, label: int, wnid: str, filename: str, fmt: str) -> bytes:
    """One serialized ``tf.train.Example`` record."""
    # Filling an empty message is ~3x faster than building it from nested constructors.
    example = tf.train.Example()
    feature = example.features.feature
    feature["image"].bytes_list.value.append(image)
    feature["label"].int64_list.value.append(label)
    feature["wnid"].bytes_list.value.append(wnid.encode())
    feature["filename"].bytes_list.value.append(filename.encode())
    feature["format"].bytes_list.value.append(fmt.encode())
    return example.SerializeToString()


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else 'no message'}"[:300]


def _sidecar_path(plan: Plan, split: str, index: int) -> str:
    return _join(plan.dataset_dir, STAGING, plan.shard_file(split, index) + ".json")


def _load_info(plan: Plan, split: str, index: int) -> dict[str, Any] | None:
    path = _sidecar_path(plan, split, index)
    if not tf.io.gfile.exists(path):
        return None
    try:
        info = json.loads(_read_text(path))
    except ValueError:
        return None
    return info if info.get("plan_id") == plan.plan_id else None


# --------------------------------------------------------------------------- finishing


def finalize(plan: Plan, infos: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write ``manifest.json`` (last, atomically) and remove the staging folder.

    Args:
        plan: The dataset's plan.
        infos: What ``write_shard`` returned for the parts; parts missing here are read
            from their sidecars.

    Returns:
        The manifest; the one already written when another finalizer got there first
        (the last parts of a job may race here).

    Raises:
        IncompleteDatasetError: Some part has not been written.
        SourceError: Not a single image of the train split was readable.
    """
    if dataset_exists(plan.dataset_dir):
        # plan() refuses finished datasets, so this manifest can only be this plan's.
        return load_manifest(plan.dataset_dir)
    by_part = {(info["split"], info["index"]): info for info in infos or ()}
    missing = []
    for split, index in plan.parts():
        info = by_part.get((split, index))
        if info is None or info.get("plan_id") != plan.plan_id:
            info = _load_info(plan, split, index)
        if info is None or not tf.io.gfile.exists(_join(plan.dataset_dir, info["file"])):
            missing.append(plan.shard_file(split, index))
        else:
            by_part[(split, index)] = info
    if missing and dataset_exists(plan.dataset_dir):
        return load_manifest(plan.dataset_dir)  # finalized meanwhile; staging is gone
    if missing:
        raise IncompleteDatasetError(f"parts not written yet: {', '.join(missing)}")
    manifest = build_manifest(plan, [by_part[part] for part in plan.parts()])
    if manifest["splits"]["train"]["count"] == 0:
        raise SourceError(_nothing_readable(plan, manifest))
    _write_text_atomic(_join(plan.dataset_dir, MANIFEST), json.dumps(manifest, indent=1))
    cleanup_temp(plan.dataset_dir)
    _remove_quietly(_join(plan.dataset_dir, STAGING), tree=True)
    return manifest


def build_manifest(plan: Plan, infos: Sequence[dict[str, Any]]) -> dict[str, Any]:
    splits: dict[str, Any] = {}
    for split in plan.shards:
        parts = sorted((info for info in infos if info["split"] == split), key=_by_index)
        per_class: Counter[str] = Counter()
        for info in parts:
            per_class.update(info["per_class"])
        splits[split] = {
            "count": sum(info["records"] for info in parts),
            "per_class": {c["wnid"]: per_class.get(c["wnid"], 0) for c in plan.classes},
            "shards": [
                {"file": info["file"], "records": info["records"], "bytes": info["bytes"]}
                for info in parts
            ],
            "bytes": sum(info["bytes"] for info in parts),
            "skipped": [entry for info in parts for entry in info["skipped"]],
        }
    return {
        "name": plan.name,
        "source": plan.source,
        "layout": plan.layout,
        "seed": plan.seed,
        "num_shards": plan.num_shards,
        "compression": plan.compression,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "image_size": IMAGE_SIZE,
        "classes": plan.classes,
        "splits": splits,
        "count": sum(s["count"] for s in splits.values()),
        "bytes": sum(s["bytes"] for s in splits.values()),
        "skipped_total": sum(len(s["skipped"]) for s in splits.values()),
    }


def _by_index(info: dict[str, Any]) -> int:
    return int(info["index"])


def _nothing_readable(plan: Plan, manifest: dict[str, Any]) -> str:
    skipped = [entry for s in manifest["splits"].values() for entry in s["skipped"]]
    examples = "; ".join(f"{e['file']}: {e['reason']}" for e in skipped[:3])
    return (
        f"source {plan.source} has no readable training images "
        f"({len(skipped)} files skipped, e.g. {examples})"
    )


def shard_dataset(
    source_path: str | PathLike[str],
    dataset_dir: str | PathLike[str],
    *,
    num_shards: int = 10,
    compression: str = "GZIP",
    seed: int = 0,
    source_label: str | None = None,
    on_progress: Progress | None = None,
    should_stop: StopCheck | None = None,
) -> dict[str, Any]:
    """Plan, write every part and finalize, in this process. Returns the manifest.

    ``on_progress(done, total)`` counts images over all parts.
    A redelivered job whose dataset was already finished with the same arguments gets the
    existing manifest back.
    """
    if dataset_exists(dataset_dir):
        manifest = load_manifest(dataset_dir)
        label = source_label if source_label is not None else Path(source_path).name
        same = (manifest["source"], manifest["seed"], manifest["compression"])
        if same == (label, seed, compression) and manifest["num_shards"] == num_shards:
            return manifest
    the_plan = plan(
        source_path,
        dataset_dir,
        num_shards=num_shards,
        compression=compression,
        seed=seed,
        source_label=source_label,
    )
    total = the_plan.total_images
    finished = 0
    infos = []
    for split, index in the_plan.parts():

        def shard_progress(done: int, _: int, base: int = finished) -> None:
            if on_progress is not None:
                on_progress(base + done, total)

        infos.append(
            write_shard(the_plan, split, index, on_progress=shard_progress, should_stop=should_stop)
        )
        finished += len(the_plan.records(split, index))
    return finalize(the_plan, infos)


# --------------------------------------------------------------------------- datasets


def dataset_exists(dataset_dir: str | PathLike[str]) -> bool:
    return tf.io.gfile.exists(_join(fspath(dataset_dir), MANIFEST))


def load_manifest(dataset_dir: str | PathLike[str]) -> dict[str, Any]:
    """The manifest of a finished dataset.

    Raises:
        DatasetNotFoundError: No finished dataset there.
    """
    path = _join(fspath(dataset_dir), MANIFEST)
    if not tf.io.gfile.exists(path):
        raise DatasetNotFoundError(f"dataset {posixpath.basename(fspath(dataset_dir))} not found")
    return json.loads(_read_text(path))


def list_datasets(datasets_root: str | PathLike[str]) -> list[dict[str, Any]]:
    """Manifests of every finished dataset directly under ``datasets_root``, by name."""
    root = fspath(datasets_root)
    if not tf.io.gfile.isdir(root):
        return []
    manifests = []
    for entry in sorted(tf.io.gfile.listdir(root)):
        folder = _join(root, entry.rstrip("/"))
        if tf.io.gfile.exists(_join(folder, MANIFEST)):
            try:
                manifests.append(load_manifest(folder))
            except (ValueError, DatasetNotFoundError):
                continue  # being replaced right now, or damaged: not listed
    return manifests


def cleanup_temp(dataset_dir: str | PathLike[str]) -> list[str]:
    """Remove the temporary files that killed writers left behind; returns their paths.

    Only call this when no writer of the dataset is running: a live writer's file would go.
    """
    folder = fspath(dataset_dir)
    removed = []
    for where in (folder, _join(folder, STAGING)):
        if not tf.io.gfile.isdir(where):
            continue
        for entry in tf.io.gfile.listdir(where):
            if TEMP_MARK in entry:
                path = _join(where, entry)
                _remove_quietly(path)
                removed.append(path)
    return removed


# --------------------------------------------------------------------------- file helpers


def _join(*parts: str) -> str:
    # Not os.path.join: the data root may be a URL such as gs://bucket/data.
    return "/".join([parts[0].rstrip("/"), *(part.strip("/") for part in parts[1:])])


def _read_text(path: str) -> str:
    with tf.io.gfile.GFile(path, "r") as handle:
        return handle.read()


def _write_text_atomic(path: str, text: str) -> None:
    temp = f"{path}{TEMP_MARK}{uuid.uuid4().hex}"
    try:
        with tf.io.gfile.GFile(temp, "w") as handle:
            handle.write(text)
        tf.io.gfile.rename(temp, path, overwrite=True)
    except BaseException:
        _remove_quietly(temp)
        raise


def _remove_quietly(path: str, *, tree: bool = False) -> None:
    try:
        if tree:
            tf.io.gfile.rmtree(path)
        else:
            tf.io.gfile.remove(path)
    except tf.errors.NotFoundError:
        pass

"""Writing one shard of a plan: restartable, idempotent, and never half-visible.

``write_shard`` writes the shard's records to a temporary file, renames it into place,
then records a small sidecar (``WrittenShard``) in the staging folder. A shard whose file
and sidecar both exist is not rewritten; a writer killed mid-way leaves only a
``*.tmp-*`` file. A source file that cannot be stored (``core.images.ImageRejected``) is
skipped and listed with the reason, never fatal.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import tensorflow as tf
from pydantic import BaseModel, ValidationError

from core.images import ImageRejected, to_stored
from core.manifest import ShardInfo, SkippedFile
from worker.sharding.planning import Plan
from worker.sharding.records import Record, make_example, tf_compression
from worker.sharding.staging import sidecar_path, temp_path, write_text_atomic
from worker.sources import SourceError, SourceFiles

PROGRESS_EVERY = 100

Progress = Callable[[int, int], None]
StopCheck = Callable[[], bool]


class ShardingStopped(Exception):
    """``should_stop`` asked a shard writer to stop; its temporary file is removed."""


class WrittenShard(BaseModel):
    """The sidecar of a written shard: what the manifest needs of it."""

    split: str
    index: int
    file: str
    records: int
    bytes: int
    per_class: dict[str, int]
    skipped: list[SkippedFile]
    plan_id: str

    def info(self) -> ShardInfo:
        return ShardInfo(file=self.file, records=self.records, bytes=self.bytes)


def write_shard(
    plan: Plan,
    split: str,
    index: int,
    *,
    on_progress: Progress | None = None,
    should_stop: StopCheck | None = None,
) -> WrittenShard:
    """Write shard ``index`` of ``split``; return its sidecar (restartable, idempotent).

    Args:
        plan: From ``plan``/``load_plan``.
        split, index: One of ``plan.all_shards()``.
        on_progress: Called as ``on_progress(done, total)`` every ``PROGRESS_EVERY`` images
            of this shard, and at its end.
        should_stop: Checked between images; when it returns True the temporary file is
            removed and ``ShardingStopped`` is raised.
    """
    final = Path(plan.dataset_dir) / plan.shard_file(split, index)
    done = load_written(plan, split, index)
    if done is not None and final.exists():
        return done
    temp = temp_path(final, uuid.uuid4().hex)
    try:
        per_class, skipped = _write_records(plan, split, index, temp, on_progress, should_stop)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    os.replace(temp, final)
    written = WrittenShard(
        split=split,
        index=index,
        file=final.name,
        records=sum(per_class.values()),
        bytes=final.stat().st_size,
        per_class=dict(sorted(per_class.items())),
        skipped=skipped,
        plan_id=plan.plan_id,
    )
    sidecar = sidecar_path(plan.dataset_dir, final.name)
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(sidecar, written.model_dump_json())
    return written


def _write_records(
    plan: Plan,
    split: str,
    index: int,
    temp: Path,
    on_progress: Progress | None,
    should_stop: StopCheck | None,
) -> tuple[Counter[str], list[SkippedFile]]:
    records = plan.records(split, index)
    wnids = [entry.wnid for entry in plan.classes]
    per_class: Counter[str] = Counter()
    skipped: list[SkippedFile] = []
    options = tf.io.TFRecordOptions(compression_type=tf_compression(plan.compression))
    with (
        SourceFiles(Path(plan.source_path)) as files,
        tf.io.TFRecordWriter(str(temp), options=options) as writer,
    ):
        for done, (key, label) in enumerate(records, start=1):
            if should_stop is not None and should_stop():
                raise ShardingStopped(f"stopped while writing {plan.shard_file(split, index)}")
            filename = plan.filename(key)
            try:
                stored = to_stored(read_source(files, key))
            except ImageRejected as exc:
                skipped.append(SkippedFile(file=filename, reason=str(exc)))
            else:
                record = Record(stored.data, label, wnids[label], filename, stored.format)
                writer.write(make_example(record))
                per_class[wnids[label]] += 1
            if on_progress is not None and (done % PROGRESS_EVERY == 0 or done == len(records)):
                on_progress(done, len(records))
    return per_class, skipped


def read_source(files: SourceFiles, key: str) -> bytes:
    """The bytes of one source file; one that vanished or cannot be read is rejected."""
    try:
        return files.read(key)
    except SourceError:
        raise  # the source as a whole is gone or broken: not one bad file
    except KeyError as exc:
        raise ImageRejected("missing from the zip") from exc
    except (OSError, RuntimeError, ValueError) as exc:  # zipfile raises all three
        raise ImageRejected(f"unreadable file: {type(exc).__name__}: {exc}"[:300]) from exc


def load_written(plan: Plan, split: str, index: int) -> WrittenShard | None:
    """The sidecar of a shard of this plan, or None when it was not written (for it)."""
    path = sidecar_path(plan.dataset_dir, plan.shard_file(split, index))
    try:
        written = WrittenShard.model_validate_json(path.read_bytes())
    except (FileNotFoundError, ValidationError):
        return None
    return written if written.plan_id == plan.plan_id else None

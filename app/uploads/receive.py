"""Receiving a PATCH: stream its body onto the partial file, then accept or refuse the
archive once its last byte is there.

The body is written in chunks of at most `BUFFER` bytes from a worker thread, so neither
the API's memory nor its event loop depend on the upload's size. The bytes are fsync'ed
before the new offset is answered; the offset is the partial file's size, so bytes that
arrived before an interrupted request stay, and a resumed upload continues after them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from app.uploads.errors import ArchiveRefused, UploadConflict, UploadTooLarge
from app.uploads.locks import upload_lock
from app.uploads.store import UploadRecord, UploadStore
from core.archives import ArchiveError, ArchiveLimits, check_archive
from core.files import files_for

BUFFER = 4 * 1024 * 1024
LOCK_TIMEOUT = 30.0


async def append(
    store: UploadStore,
    upload_id: str,
    offset: int,
    body: AsyncIterator[bytes],
    content_length: int | None,
) -> tuple[UploadRecord, int]:
    """Append `body` at `offset` to upload `upload_id`; returns its record and new offset.

    Raises:
        UploadNotFound: No such upload.
        UploadConflict: `offset` is not the upload's offset (its `Upload-Offset` header
            carries the right one), or the upload is already finished.
        UploadTooLarge: The body goes past Upload-Length; nothing of it is kept.
        ArchiveRefused: The last byte arrived and the archive failed a check (the reason
            says which); the upload is gone.
    """
    async with upload_lock(store.lock_path(upload_id), LOCK_TIMEOUT):
        record = store.get(upload_id)  # read under the lock: another PATCH may have moved it
        current = store.offset(record)
        if record.finished and offset == current and not content_length:
            return record, current
        if record.finished:
            raise UploadConflict(f"upload is finished: it is the source {record.source}")
        if offset != current:
            raise UploadConflict(
                f"Upload-Offset {offset} is not the upload's offset {current}; "
                "ask with HEAD and resume from there",
                {"Upload-Offset": str(current)},
            )
        room = record.length - offset
        if content_length is not None and content_length > room:
            raise UploadTooLarge(
                f"{content_length} bytes at offset {offset} go past Upload-Length {record.length}"
            )
        record = await run_in_threadpool(store.touch, record)
        written = await _receive(store.part_path(upload_id), offset, room, body)
        new_offset = offset + written
        if new_offset == record.length:
            record = await run_in_threadpool(_complete, store, record)
        return record, new_offset


async def _receive(path: Path, offset: int, room: int, body: AsyncIterator[bytes]) -> int:
    """Write `body` at `offset` of `path`, at most `room` bytes; returns how many."""
    fd = await run_in_threadpool(_open_at, path, offset)
    buffer = bytearray()
    written = 0
    try:
        async for chunk in body:
            if written + len(buffer) + len(chunk) > room:
                buffer.clear()
                await run_in_threadpool(os.ftruncate, fd, offset)
                written = 0
                raise UploadTooLarge(f"the body goes past Upload-Length ({offset + room} bytes)")
            buffer += chunk
            if len(buffer) >= BUFFER:
                full, buffer = buffer, bytearray()
                written += await run_in_threadpool(_write_all, fd, full)
    finally:
        # Also when the client went away: what arrived is kept, and durable.
        if buffer:
            written += await run_in_threadpool(_write_all, fd, buffer)
        await run_in_threadpool(_sync_close, fd)
    return written


def _open_at(path: Path, offset: int) -> int:
    fd = os.open(path, os.O_WRONLY)
    os.lseek(fd, offset, os.SEEK_SET)
    return fd


def _write_all(fd: int, data: bytes | bytearray) -> int:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    return len(data)


def _sync_close(fd: int) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _complete(store: UploadStore, record: UploadRecord) -> UploadRecord:
    """Check the finished archive; accept it as a source, or remove it and raise."""
    part = store.part_path(record.id)
    settings = store.settings
    limits = ArchiveLimits(settings.max_archive_members, settings.max_archive_bytes)
    try:
        check_archive(part, record.suffix, limits)
    except ArchiveError as exc:
        store.remove(record)
        raise ArchiveRefused(f"archive refused: {exc}") from exc
    target = store.source_path(record.name, record.suffix)
    files = files_for(settings)
    if files.remote:
        # In the store before the upload is answered complete. (A name that two API
        # hosts accept at once: the last upload wins; names are reserved per host.)
        key = files.key_of(target)
        if files.exists(key):
            store.remove(record)
            raise UploadConflict(f"name {record.name!r} is taken: {target.name} appeared")
        files.publish(part, key)
    else:
        try:
            os.link(part, target)  # atomic, and never replaces a source that appeared since
        except FileExistsError:
            store.remove(record)
            raise UploadConflict(f"name {record.name!r} is taken: {target.name} appeared") from None
        with contextlib.suppress(OSError):
            _fsync_dir(target.parent)
    accepted = replace(record, source=target.relative_to(settings.resolved_data_root).as_posix())
    store.save(accepted)
    part.unlink(missing_ok=True)
    store.release_name(record.name, record.id)
    return accepted


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def terminate(store: UploadStore, upload_id: str) -> None:
    """Remove an unfinished upload (tus termination).

    Raises:
        UploadNotFound: No such upload.
        UploadConflict: It is finished: remove its source instead.
    """
    async with upload_lock(store.lock_path(upload_id), LOCK_TIMEOUT):
        record = store.get(upload_id)
        if record.finished:
            raise UploadConflict(
                f"upload is finished: remove its source with DELETE /sources/{record.source}"
            )
        await run_in_threadpool(store.remove, record)

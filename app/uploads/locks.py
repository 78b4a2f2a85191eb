"""One upload at a time: an exclusive flock on the upload's lock file, so concurrent
requests on one upload are serialized across threads, coroutines and API processes."""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from app.uploads.errors import UploadBusy

# flock is held per open file description: each holder opens the file itself, so two
# coroutines of one process exclude each other as two processes do.


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _release(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@asynccontextmanager
async def upload_lock(path: Path, timeout: float) -> AsyncIterator[None]:
    """Hold the lock at `path`, polling without blocking the event loop.

    Raises:
        UploadBusy: Not acquired within `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    delay = 0.005
    while (fd := _try_lock(path)) is None:
        if time.monotonic() > deadline:
            raise UploadBusy("another request is writing this upload; retry later")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)
    try:
        yield
    finally:
        _release(fd)


@contextmanager
def try_upload_lock(path: Path) -> Iterator[bool]:
    """Hold the lock at `path` if it is free now; yields whether it is held."""
    fd = _try_lock(path)
    try:
        yield fd is not None
    finally:
        if fd is not None:
            _release(fd)

"""Where files live: one small interface over local disk and S3-compatible object stores.

`open_store(settings)` gives the local backend (root: the data root, exactly the files of
today) when ``TINYRES_STORAGE_URL`` is unset, and the S3 backend (``core/store_s3.py``, via
fsspec's s3fs) for ``s3://bucket/prefix``. Both are reached through the same `Store`
methods with the same keys: relative posix paths such as ``datasets/x/manifest.json``.

The commit rule (object stores cannot rename: a rename is copy-then-delete, so today's
tmp-and-rename commits do not carry over):

1. every object is written once, under its final key, and never rewritten in place;
2. the object that makes a set of them exist (a dataset's ``manifest.json``, or a
   ``commit.json`` marker written by `write_marker`) is written LAST, and records the size
   (and ETag) of every object it names;
3. readers trust only what a manifest or marker names, and check each object's size
   against what was recorded (`check_recorded`): an object that is there but not named is
   the leftover of a crash, and one whose size differs (truncated) is refused with
   `TruncatedObject`, never read as if complete.

A single S3 PUT is atomic (the object appears whole or not at all), so rule 1 needs no
temporary keys; the local backend still writes ``.tmp-*`` files and renames them, so a
local reader sees exactly what it sees today.

Faults: transient ones (connection errors, 5xx, throttling) are retried with exponential
backoff for `DEFAULT_RETRY_SECONDS` (see `RetryPolicy`), then raise `StoreUnavailable`; a
wrong bucket, bad credentials or a bad URL raise `StoreMisconfigured` at once, with the
reason. Both name the store, so a failed job's ``error`` says what to fix.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from core.config import Settings

DEFAULT_RETRY_SECONDS = 120.0
COMMIT_MARKER = "commit.json"


class StoreError(Exception):
    """A fault of the storage layer; its message says which store and what to do."""


class StoreUnavailable(StoreError):
    """The store did not answer (or kept failing transiently) for the whole retry time."""


class StoreMisconfigured(StoreError):
    """Wrong bucket, bad credentials, a bad URL: retrying would not help."""


class ObjectNotFound(StoreError, FileNotFoundError):
    """No object under that key (a FileNotFoundError too, for callers of today's code)."""


class TruncatedObject(StoreError):
    """An object whose size differs from what its manifest or marker recorded."""


@dataclass(frozen=True)
class ObjectInfo:
    """What the store says about one object: its key, size in bytes and ETag."""

    key: str
    size: int
    etag: str


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff on transient faults: waits of `first_delay` seconds, doubling up
    to `max_delay`, until `total_seconds` have passed since the first attempt (0: a single
    attempt). The default (120 s) rides out a store restart or a short network partition;
    a job then fails with `StoreUnavailable` instead of hanging."""

    total_seconds: float = DEFAULT_RETRY_SECONDS
    first_delay: float = 0.5
    max_delay: float = 15.0

    def wait_after(self, failures: int, elapsed: float) -> float | None:
        """The wait before the next attempt after `failures` failed ones, `elapsed` seconds
        after the first began; None when the time is up."""
        remaining = self.total_seconds - elapsed
        if remaining <= 0:
            return None
        return min(self.first_delay * 2 ** (failures - 1), self.max_delay, remaining)


def check_key(key: str) -> str:
    """`key` if it is a relative posix path without ``..`` or empty parts; else ValueError."""
    path = PurePosixPath(key)
    if (
        not key
        or "\\" in key
        or key.startswith("/")
        or key.endswith("/")
        or any(part in ("", ".", "..") for part in key.split("/"))
        or path.is_absolute()
    ):
        raise ValueError(f"not a store key (a relative posix path): {key!r}")
    return key


def join_key(*parts: str) -> str:
    return check_key("/".join(part.strip("/") for part in parts if part.strip("/")))


def check_recorded(info: ObjectInfo, size: int | None, etag: str | None = None) -> ObjectInfo:
    """`info` if it matches what a manifest or marker recorded; else `TruncatedObject`."""
    if size is not None and info.size != size:
        raise TruncatedObject(
            f"object {info.key!r} in the store is {info.size} bytes but its manifest "
            f"recorded {size}: it is truncated or was overwritten, and is not trusted"
        )
    if etag is not None and info.etag != etag:
        raise TruncatedObject(
            f"object {info.key!r} in the store has ETag {info.etag} but its manifest "
            f"recorded {etag}: it was overwritten, and is not trusted"
        )
    return info


class Store(ABC):
    """The operations every backend offers. Keys are relative posix paths (`check_key`)."""

    url: str  # where the store is, for messages (never holds credentials)

    @abstractmethod
    def put_file(self, local_path: Path, key: str) -> ObjectInfo:
        """Upload `local_path` under `key` (written once, whole: never seen half-written)."""

    @abstractmethod
    def put_bytes(self, data: bytes, key: str) -> ObjectInfo: ...

    @abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def get_file(self, key: str, local_path: Path, *, size: int | None = None) -> ObjectInfo:
        """Download `key` to `local_path` atomically (a temporary file beside it, its size
        checked against the store's and against `size` when given, then ``os.replace``)."""

    @abstractmethod
    def info(self, key: str) -> ObjectInfo:
        """Size and ETag of `key`; `ObjectNotFound` when there is no such object."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Every key under `prefix` (the key itself, or below ``prefix/``), sorted."""

    @abstractmethod
    def delete(self, prefix: str) -> None:
        """Remove `prefix` and every key below ``prefix/`` (nothing there is no error)."""

    @abstractmethod
    def check(self) -> None:
        """Raise `StoreMisconfigured` or `StoreUnavailable` unless the store answers."""

    def exists(self, key: str) -> bool:
        try:
            self.info(key)
        except ObjectNotFound:
            return False
        return True

    def local_path(self, key: str) -> Path | None:
        """The file of `key` on this host's disk, for backends that have one (local)."""
        return None


# --------------------------------------------------------------------------- commit markers


@dataclass(frozen=True)
class CommitMarker:
    """What a marker names: object names (relative to the marker's folder) and their info."""

    folder: str
    objects: dict[str, ObjectInfo]
    committed_at: float

    def key(self, name: str) -> str:
        return join_key(self.folder, name)


def write_marker(store: Store, folder: str, names: list[str]) -> CommitMarker:
    """Commit the objects `names` of `folder`: record each one's size and ETag as the store
    reports them now, then write the marker, last. Missing objects raise `ObjectNotFound`
    (nothing is committed)."""
    infos = {name: store.info(join_key(folder, name)) for name in names}
    committed_at = time.time()
    body = {
        "committed_at": committed_at,
        "objects": {name: {"size": i.size, "etag": i.etag} for name, i in infos.items()},
    }
    store.put_bytes(json.dumps(body, indent=1).encode(), join_key(folder, COMMIT_MARKER))
    return CommitMarker(folder=folder, objects=infos, committed_at=committed_at)


def read_marker(store: Store, folder: str) -> CommitMarker | None:
    """The marker of `folder`, or None when nothing was committed there (yet)."""
    try:
        raw = json.loads(store.get_bytes(join_key(folder, COMMIT_MARKER)))
    except ObjectNotFound:
        return None
    objects = {
        name: ObjectInfo(join_key(folder, name), int(entry["size"]), str(entry["etag"]))
        for name, entry in raw["objects"].items()
    }
    return CommitMarker(folder=folder, objects=objects, committed_at=float(raw["committed_at"]))


def verify_marker(store: Store, marker: CommitMarker) -> None:
    """Check every object the marker names against the store (`TruncatedObject` if not)."""
    for name, recorded in marker.objects.items():
        check_recorded(store.info(marker.key(name)), recorded.size)


# --------------------------------------------------------------------------- opening


def open_store(
    settings: Settings, *, retry: RetryPolicy | None = None, timeout: float | None = None
) -> Store:
    """The store the settings name: local disk under the data root, or ``s3://...``.

    `retry` overrides the retry policy and `timeout` the connect and read timeouts of one
    request (seconds; /readyz wants an answer fast). Raises `StoreMisconfigured` for a URL
    of another scheme or without a bucket.
    """
    url = settings.storage_url
    if url is None:
        from core.store_local import LocalStore

        return LocalStore(settings.resolved_data_root)
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise StoreMisconfigured(
            f"TINYRES_STORAGE_URL={url!r}: expected s3://bucket/prefix (or unset for local disk)"
        )
    from core.store_s3 import S3Store

    return S3Store(
        bucket=parsed.netloc,
        prefix=parsed.path.strip("/"),
        endpoint_url=settings.s3_endpoint_url,
        retry=retry or RetryPolicy(total_seconds=settings.storage_retry_seconds),
        **({"connect_timeout": timeout, "read_timeout": timeout} if timeout else {}),
    )

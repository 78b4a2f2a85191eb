"""A host's cache of objects read from the store (``TINYRES_CACHE_DIR``).

tf.data reads local files (``TFRecordDataset``: TensorFlow 2.21 cannot open ``s3://``, and
a Python generator would hold the GIL), and a model is loaded from a file: both read the
store through this cache. It is:

- bounded: at most ``TINYRES_CACHE_MAX_BYTES`` of entries, the least recently used ones
  evicted first (last use: the later of a file's atime and mtime, touched on every hit);
  an object larger than the whole bound is refused with `CacheTooSmall`. Downloads in
  flight in other processes count as they grow, and entries in use (`pinned`) are not
  evicted, so the bound can be passed by what is being fetched or read at that moment;
- filled atomically: an entry is downloaded to a temporary file and renamed into place
  (`Store.get_file`), with its size checked; its size and ETag are recorded beside it;
- checked: an entry is used only while its recorded size and ETag match the store's (a
  HEAD per use) or, without a HEAD, the size and ETag a manifest or marker recorded (the
  commit rule makes committed objects immutable). A changed object is fetched again; an
  object whose size differs from the recorded one is refused (`TruncatedObject`);
- shared by the host's worker processes: one ``flock`` per entry, so two processes asking
  for the same object download it once; eviction skips entries another process holds
  (`pinned`), so a file is never removed under a reader that pinned it.

With the local backend there is nothing to cache: `fetch` returns the file itself.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.config import Settings
from core.manifest import TEMP_MARK
from core.storage import ObjectInfo, Store, StoreMisconfigured, check_key, check_recorded
from core.store_local import temp_beside

_STALE_TEMP_SECONDS = 3600.0


class CacheTooSmall(StoreMisconfigured):
    """An object larger than the cache's whole bound."""


@dataclass(frozen=True)
class Cached:
    """A cache entry: its local file, what the store said of it, whether this call fetched it."""

    path: Path
    info: ObjectInfo
    fetched: bool


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class StoreCache:
    """Entries under ``root/<store digest>/``: ``objects/<key>``, ``meta/``, ``locks/``."""

    def __init__(self, store: Store, root: Path, max_bytes: int) -> None:
        self.store, self.max_bytes = store, max_bytes
        self.root = root / _digest(store.url)[:16]
        self.objects, self.meta, self.locks = (self.root / n for n in ("objects", "meta", "locks"))

    @classmethod
    def for_settings(cls, store: Store, settings: Settings) -> StoreCache:
        return cls(store, settings.resolved_cache_dir, settings.cache_max_bytes)

    # ------------------------------------------------------------------ public

    def fetch(self, key: str, *, size: int | None = None, etag: str | None = None) -> Path:
        """A local file holding the object `key` (size and ETag as recorded, when given)."""
        local = self.store.local_path(key)
        if local is not None:
            check_recorded(self.store.info(key), size, etag)
            return local
        return self.fill(key, size=size, etag=etag).path

    def fill(self, key: str, *, size: int | None = None, etag: str | None = None) -> Cached:
        """The entry of `key`, fetched unless a valid copy is there already. Hits share the
        entry's lock; a fetch holds it alone, so one process downloads and the others wait
        for it and then hit."""
        entry = self.objects / check_key(key)
        with self._locked(key, fcntl.LOCK_SH):
            valid, _ = self._validate(key, entry, size, etag)
            if valid is not None:
                return self._hit(entry, valid)
        with self._locked(key, fcntl.LOCK_EX):
            valid, info = self._validate(key, entry, size, etag)
            if valid is not None:
                return self._hit(entry, valid)
            assert info is not None
            self._make_room(info.size, keep=key)
            info = self.store.get_file(key, entry, size=info.size)
            self._record(key, info)
            return Cached(entry, info, fetched=True)

    @contextmanager
    def pinned(
        self, key: str, *, size: int | None = None, etag: str | None = None
    ) -> Iterator[Path]:
        """`fetch`, and keep the entry from eviction until the block ends. (Do not fetch the
        same key again inside the block: a refetch would wait for this very pin.)"""
        if self.store.local_path(key) is not None:
            yield self.fetch(key, size=size, etag=etag)
            return
        while True:
            entry = self.fill(key, size=size, etag=etag).path
            with self._locked(key, fcntl.LOCK_SH):
                if self._recorded(key, entry) is not None:  # not evicted since the fill
                    yield entry
                    return

    def usage(self) -> int:
        """Bytes the cache holds now (finished entries and downloads in flight)."""
        return sum(size for _, size, _ in self._entries(with_temporary=True))

    # ------------------------------------------------------------------ entries

    def _hit(self, entry: Path, info: ObjectInfo) -> Cached:
        now = time.time()
        os.utime(entry, (now, now))
        return Cached(entry, info, fetched=False)

    def _validate(
        self, key: str, entry: Path, size: int | None, etag: str | None
    ) -> tuple[ObjectInfo | None, ObjectInfo | None]:
        """(the cached entry's info if it may be used, the store's info if it was asked)."""
        cached = self._recorded(key, entry)
        if cached is not None and (cached.size, cached.etag) == (size, etag):
            return cached, None  # what a manifest or marker named: no HEAD needed
        info = check_recorded(self.store.info(key), size, etag)
        if cached is not None and (cached.size, cached.etag) == (info.size, info.etag):
            return cached, info
        return None, info

    def _meta_path(self, key: str) -> Path:
        return self.meta / f"{_digest(key)}.json"

    def _recorded(self, key: str, entry: Path) -> ObjectInfo | None:
        """What was recorded for the entry, if the entry is there whole."""
        try:
            raw = json.loads(self._meta_path(key).read_text())
            on_disk = entry.stat().st_size
        except (OSError, ValueError):
            return None
        info = ObjectInfo(key, int(raw["size"]), str(raw["etag"]))
        return info if on_disk == info.size else None

    def _record(self, key: str, info: ObjectInfo) -> None:
        path = self._meta_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = temp_beside(path)
        temporary.write_text(json.dumps({"key": key, "size": info.size, "etag": info.etag}))
        os.replace(temporary, path)

    def _entries(self, *, with_temporary: bool = False) -> list[tuple[float, int, Path]]:
        """(last use, size, path) of every file under objects/."""
        found = []
        for folder, _, files in os.walk(self.objects):
            for name in files:
                if name.startswith(TEMP_MARK) and not with_temporary:
                    continue
                path = Path(folder, name)
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                found.append((max(stat.st_atime, stat.st_mtime), stat.st_size, path))
        return found

    def _make_room(self, incoming: int, *, keep: str) -> None:
        """Evict least recently used entries until `incoming` more bytes fit."""
        if incoming > self.max_bytes:
            raise CacheTooSmall(
                f"an object of {incoming} bytes does not fit in the cache "
                f"(TINYRES_CACHE_MAX_BYTES={self.max_bytes})"
            )
        with self._locked("", fcntl.LOCK_EX, name="evict"):
            everything = self._entries(with_temporary=True)
            total = sum(size for _, size, _ in everything)
            now = time.time()
            for used, _, path in everything:  # downloads abandoned by a dead process
                if path.name.startswith(TEMP_MARK) and now - used > _STALE_TEMP_SECONDS:
                    path.unlink(missing_ok=True)
            for _, size, path in sorted(self._entries()):
                if total + incoming <= self.max_bytes:
                    break
                key = path.relative_to(self.objects).as_posix()
                if key != keep and self._evict(key, path):
                    total -= size

    def _evict(self, key: str, path: Path) -> bool:
        """Remove an entry unless some process holds it; whether it was removed."""
        handle = self._lock_handle(key)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            return False
        try:
            path.unlink(missing_ok=True)
            self._meta_path(key).unlink(missing_ok=True)
            return True
        finally:
            os.close(handle)  # closing releases the lock

    # ------------------------------------------------------------------ locks

    def _lock_handle(self, key: str, name: str | None = None) -> int:
        self.locks.mkdir(parents=True, exist_ok=True)
        path = self.locks / f"{name or _digest(key)}.lock"
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)

    @contextmanager
    def _locked(self, key: str, mode: int, *, name: str | None = None) -> Iterator[None]:
        """An flock on the entry's lock file (never deleted, so every process locks the same
        inode), held for the block."""
        handle = self._lock_handle(key, name)
        try:
            fcntl.flock(handle, mode)
            yield
        finally:
            os.close(handle)

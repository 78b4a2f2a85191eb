"""The data root and the store together: what every reader and writer of files goes through.

The store (``core/storage.py``) is the truth every host shares; the data root is this
host's working copy of it. A writer commits a file locally as before (a temporary file
renamed into place), then `publish`es it under its key (the path relative to the data
root); a reader asks `local` for a local file of a key, which the store gives through the
per-host cache (``core/store_cache.py``), checked against the size a manifest recorded.

With ``TINYRES_STORAGE_URL`` unset the store is the data root itself (`remote` is False):
`publish` uploads nothing, `local` returns the data root's own file, and nothing is ever
copied, so every path is exactly today's.

    files = files_for(settings)
    path = files.path_of("datasets/x/train-00000-of-00002.tfrecord")  # write it here
    files.publish(path)                                                # then this
    local = files.local("datasets/x/train-00000-of-00002.tfrecord", size=recorded)
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from core.config import Settings
from core.storage import ObjectInfo, ObjectNotFound, Store, check_key, check_recorded, open_store
from core.store_cache import StoreCache


class Files:
    """One host's view of the store: keys, publishing, local copies, listing, deletion."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.root = settings.resolved_data_root
        self.store = store or open_store(settings)
        self.remote = self.store.local_path("probe") is None  # no file of its own on disk
        self._cache: StoreCache | None = None

    @property
    def cache(self) -> StoreCache:
        if self._cache is None:
            self._cache = StoreCache.for_settings(self.store, self.settings)
        return self._cache

    # ------------------------------------------------------------------ keys and paths

    def key_of(self, path: str | os.PathLike[str]) -> str:
        """The key of a file under the data root (its relative posix path); ValueError for
        a path outside it."""
        path = Path(path)
        for candidate in (path.absolute(), path.resolve()):
            try:
                return check_key(candidate.relative_to(self.root).as_posix())
            except ValueError:
                continue
        raise ValueError(f"{path} is not under the data root {self.root}")

    def path_of(self, key: str) -> Path:
        """Where `key` lives in this host's working copy (the data root)."""
        return self.root / check_key(key)

    # ------------------------------------------------------------------ writing

    def publish(self, path: str | os.PathLike[str], key: str | None = None) -> ObjectInfo:
        """Upload the committed local file `path` under `key` (default: its own key).

        The local backend: the file already is the object (or is copied there atomically
        when `key` names another place). Call it only once the file is complete: the
        object is written once, whole, and never rewritten in place.
        """
        return self.store.put_file(Path(path), key or self.key_of(path))

    def put_bytes(self, data: bytes, key: str) -> ObjectInfo:
        return self.store.put_bytes(data, key)

    def discard_local(self, path: str | os.PathLike[str]) -> None:
        """Remove a scratch file once it is in the store (nothing with the local backend,
        where the file is the object)."""
        if self.remote:
            Path(path).unlink(missing_ok=True)

    # ------------------------------------------------------------------ reading

    def local(self, key: str, size: int | None = None, etag: str | None = None) -> Path:
        """A local file holding the object `key`, checked against the `size` (and `etag`)
        a manifest recorded: `TruncatedObject` when they differ, `ObjectNotFound` when
        there is none. The local backend: the data root's file itself."""
        return self.cache.fetch(key, size=size, etag=etag)

    def local_tree(self, prefix: str) -> Path:
        """A local folder holding every object under `prefix` (a folder source). The local
        backend: the data root's folder itself. The folder does not exist when nothing is
        under `prefix`."""
        if not self.remote:
            return self.path_of(prefix)
        for key in self.store.list(prefix):
            self.cache.fetch(key)
        return self.cache.objects / check_key(prefix)

    def get_bytes(self, key: str) -> bytes:
        return self.store.get_bytes(key)

    def info(self, key: str, size: int | None = None) -> ObjectInfo:
        """What the store says of `key`, checked against a recorded `size`."""
        return check_recorded(self.store.info(key), size)

    def exists(self, key: str) -> bool:
        return self.store.exists(key)

    def exists_any(self, key: str) -> bool:
        """Whether `key` is an object or a prefix with objects below it (a folder)."""
        return self.exists(key) or bool(self.store.list(key))

    def list(self, prefix: str = "") -> list[str]:
        return self.store.list(prefix)

    # ------------------------------------------------------------------ removing

    def delete(self, prefix: str) -> None:
        """Remove `prefix` and everything below it from the store, and this host's working
        copy of it (the cache's entries are left to its eviction: each is checked against
        the store before use)."""
        self.store.delete(prefix)
        if self.remote:
            local = self.path_of(prefix)
            if local.is_dir() and not local.is_symlink():
                shutil.rmtree(local, ignore_errors=True)
            else:
                local.unlink(missing_ok=True)


def files_for(settings: Settings) -> Files:
    """The `Files` of these settings, one per process and configuration (an S3 client is
    worth keeping: it holds a connection pool)."""
    key = (
        settings.storage_url,
        settings.s3_endpoint_url,
        str(settings.resolved_data_root),
        str(settings.resolved_cache_dir),
        settings.cache_max_bytes,
        settings.storage_retry_seconds,
    )
    found = _FILES.get(key)
    if found is None:
        found = _FILES[key] = Files(settings)
    return found


_FILES: dict[tuple[object, ...], Files] = {}

__all__ = ["Files", "ObjectNotFound", "files_for"]

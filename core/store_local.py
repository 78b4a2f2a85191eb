"""The local-disk backend: keys are files under the data root, exactly today's layout.

Writes go to a ``.tmp-*`` file beside the final one and are renamed into place
(``os.replace``), the same commit the code used before the store existed; listings skip
those temporary files. The ETag of a file is its size and modification time: there is no
content hash to ask for on a plain file system.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from core.manifest import TEMP_MARK
from core.storage import (
    ObjectInfo,
    ObjectNotFound,
    Store,
    StoreMisconfigured,
    check_key,
    check_recorded,
)


def temp_beside(path: Path) -> Path:
    """A temporary name in `path`'s folder (same file system, so the rename is atomic)."""
    return path.with_name(f"{TEMP_MARK}{uuid.uuid4().hex[:12]}-{path.name}")


def copy_atomically(source: Path, target: Path) -> None:
    """Copy `source` to `target` through a temporary file and a rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = temp_beside(target)
    try:
        shutil.copyfile(source, temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


class LocalStore(Store):
    """Files under `root` (the data root)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    def local_path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _info_of(self, key: str, path: Path) -> ObjectInfo:
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {key!r} under {self.url}") from None
        if not path.is_file():
            raise ObjectNotFound(f"{key!r} under {self.url} is a folder, not an object")
        return ObjectInfo(key, stat.st_size, f"{stat.st_size:x}-{stat.st_mtime_ns:x}")

    def info(self, key: str) -> ObjectInfo:
        return self._info_of(key, self.local_path(key))

    def put_file(self, local_path: Path, key: str) -> ObjectInfo:
        target = self.local_path(key)
        if Path(local_path).resolve() != target.resolve():
            copy_atomically(Path(local_path), target)
        return self.info(key)

    def put_bytes(self, data: bytes, key: str) -> ObjectInfo:
        target = self.local_path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = temp_beside(target)
        try:
            temporary.write_bytes(data)
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
        return self.info(key)

    def get_bytes(self, key: str) -> bytes:
        path = self.local_path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise ObjectNotFound(f"no object {key!r} under {self.url}") from None

    def get_file(self, key: str, local_path: Path, *, size: int | None = None) -> ObjectInfo:
        info = check_recorded(self.info(key), size)
        source = self.local_path(key)
        if Path(local_path).resolve() != source.resolve():
            copy_atomically(source, Path(local_path))
        return info

    def list(self, prefix: str = "") -> list[str]:
        base = self.local_path(prefix) if prefix else self.root
        if base.is_file():
            return [prefix] if TEMP_MARK not in base.name else []
        if not base.is_dir():
            return []
        keys = []
        for folder, _, files in os.walk(base):
            for name in files:
                if not name.startswith(TEMP_MARK):
                    keys.append(Path(folder, name).relative_to(self.root).as_posix())
        return sorted(keys)

    def delete(self, prefix: str) -> None:
        path = self.local_path(prefix)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def check(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise StoreMisconfigured(f"the data root {self.url} is not a folder")

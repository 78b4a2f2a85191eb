"""A folder as a tar archive, made on the fly: a seekable read-only stream of known length.

The tar's bytes are computed from a listing of the folder (each member is its header
blocks, then its data padded to 512 bytes; two zero blocks end the archive), so its length
is known before a byte is read and any offset can be read again: what a resumable (tus)
upload needs, without a temporary copy of the folder.
"""

from __future__ import annotations

import io
import os
import tarfile
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path

BLOCK = 512


@dataclass(frozen=True)
class _Part:
    start: int
    header: bytes
    path: Path | None  # None: a directory (no data)
    size: int

    @property
    def length(self) -> int:
        return len(self.header) + -(-self.size // BLOCK) * BLOCK


def _members(folder: Path) -> list[tuple[str, Path, os.stat_result]]:
    found = []
    for top, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(dirs) + sorted(files):
            path = Path(top) / name
            info = path.lstat()
            if path.is_symlink() or not (path.is_dir() or path.is_file()):
                continue  # links and special files are not part of a dataset
            found.append((path.relative_to(folder).as_posix(), path, info))
    return found


def _header(arcname: str, info: os.stat_result, is_dir: bool) -> bytes:
    member = tarfile.TarInfo(arcname + ("/" if is_dir else ""))
    member.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    member.size = 0 if is_dir else info.st_size
    member.mtime = int(info.st_mtime)
    member.mode = 0o755 if is_dir else 0o644
    return member.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape")


class FolderTar(io.RawIOBase):
    """`FolderTar(folder)`: the tar of the folder's files (member names relative to it)."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder
        self._parts: list[_Part] = []
        offset = 0
        latest = 0
        for arcname, path, info in _members(folder):
            is_dir = path.is_dir()
            part = _Part(
                offset,
                _header(arcname, info, is_dir),
                None if is_dir else path,
                0 if is_dir else info.st_size,
            )
            self._parts.append(part)
            offset += part.length
            latest = max(latest, info.st_mtime_ns)
        self.size = offset + 2 * BLOCK
        self.files = sum(part.path is not None for part in self._parts)
        self.latest_mtime_ns = latest
        self._starts = [part.start for part in self._parts]
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self.size}[whence]
        self._position = max(base + offset, 0)
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        end = self.size if size is None or size < 0 else min(self.size, self._position + size)
        chunks = []
        while self._position < end:
            chunk = self._read_at(self._position, end - self._position)
            chunks.append(chunk)
            self._position += len(chunk)
        return b"".join(chunks)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _read_at(self, position: int, count: int) -> bytes:
        index = bisect_right(self._starts, position) - 1
        if index < 0 or position >= self._starts[-1] + self._parts[-1].length:
            return bytes(min(count, self.size - position))  # the two end blocks
        part = self._parts[index]
        within = position - part.start
        if within < len(part.header):
            return part.header[within : within + count]
        within -= len(part.header)
        if part.path is None or within >= part.size:
            return bytes(min(count, part.length - len(part.header) - within))
        with part.path.open("rb") as file:
            file.seek(within)
            data = file.read(min(count, part.size - within))
        # A file that shrank since the listing reads as zeros: the length stays exact.
        return data or bytes(min(count, part.size - within))

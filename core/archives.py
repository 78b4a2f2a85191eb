"""Dataset archives (.zip, .tar, .tar.gz): safety checks, and a member reader for tars.

An archive is read in place, never extracted. Before an uploaded archive becomes a source,
`check_archive` reads it through once and refuses it, with a reason meant for the user,
when it is not the archive its name says, is truncated or corrupt, has a member whose path
is absolute or climbs out with ``..``, a symbolic or hard link (or a device, a fifo), more
members than the limit, more uncompressed bytes than the limit, or the same name twice.
Zip headers can lie about sizes, so zip members are counted while they are decompressed
too; a tar member's size is what the reader consumes, so its header is the truth.

`TarMembers` lists and reads the files of a .tar or .tar.gz with the same checks, for the
shard worker (the zip reader is the standard library's ``zipfile``). Nothing here imports
TensorFlow.
"""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

# Canonical suffixes and the kind of archive each is; `.tgz` is stored as `.tar.gz`.
SUFFIXES: dict[str, str] = {".zip": ".zip", ".tar": ".tar", ".tar.gz": ".tar.gz", ".tgz": ".tar.gz"}
KINDS: dict[str, str] = {".zip": "zip", ".tar": "tar", ".tar.gz": "tar"}
_CHUNK = 1024 * 1024


class ArchiveError(ValueError):
    """An archive refused, with a reason meant for the user."""


@dataclass(frozen=True)
class ArchiveLimits:
    max_members: int | None = None
    max_bytes: int | None = None


@dataclass(frozen=True)
class ArchiveSummary:
    kind: str  # "zip" | "tar"
    members: int
    bytes: int  # uncompressed bytes of the files


def archive_suffix(filename: str) -> str | None:
    """The canonical suffix (".zip", ".tar", ".tar.gz") of `filename`, or None."""
    lower = filename.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix) and len(lower) > len(suffix):
            return SUFFIXES[suffix]
    return None


def safe_member_name(name: str) -> str:
    """`name` without a leading ``./``; ArchiveError if absolute or climbing out."""
    if not name or "\x00" in name:
        raise ArchiveError(f"member with an empty or invalid name: {name[:200]!r}")
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(parts[0]) == 2 and parts[0][1] == ":"):
        raise ArchiveError(f"member with an absolute path: {name[:200]!r}")
    if ".." in parts:
        raise ArchiveError(f"member path climbs out of the archive with '..': {name[:200]!r}")
    kept = [part for part in parts if part not in ("", ".")]
    return "/".join(kept)


@dataclass
class _Tally:
    """Counts members and bytes against the limits, and refuses duplicate names."""

    limits: ArchiveLimits
    members: int = 0
    bytes: int = 0
    names: set[str] = field(default_factory=set)

    def add_member(self, name: str, declared: int) -> str:
        clean = safe_member_name(name)
        if clean in self.names:
            raise ArchiveError(f"duplicate member name: {clean[:200]!r}")
        self.names.add(clean)
        self.members += 1
        if self.limits.max_members is not None and self.members > self.limits.max_members:
            raise ArchiveError(f"more than {self.limits.max_members} members")
        self.add_bytes(declared)
        return clean

    def add_bytes(self, count: int) -> None:
        self.bytes += count
        if self.limits.max_bytes is not None and self.bytes > self.limits.max_bytes:
            raise ArchiveError(
                f"more than {self.limits.max_bytes} bytes once uncompressed (a zip bomb?)"
            )


def check_archive(path: Path, suffix: str, limits: ArchiveLimits) -> ArchiveSummary:
    """Read the archive at `path` through once and refuse it if it is unsafe.

    Args:
        path: The archive file.
        suffix: What its name says it is: ".zip", ".tar" or ".tar.gz".
        limits: Most members and most uncompressed bytes.

    Raises:
        ArchiveError: With a readable reason.
    """
    with open(path, "rb") as handle:
        head = handle.read(512)
    if suffix == ".zip":
        if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
            raise ArchiveError("not a zip archive")
        return _check_zip(path, _Tally(limits))
    if suffix == ".tar.gz":
        if not head.startswith(b"\x1f\x8b"):
            raise ArchiveError("not a gzip-compressed tar archive")
    elif suffix == ".tar":
        if head[257:262] != b"ustar":
            raise ArchiveError("not a tar archive" if len(head) == 512 else "truncated tar")
    else:
        raise ArchiveError(f"unsupported archive type {suffix!r}")
    return _check_tar(path, suffix == ".tar.gz", _Tally(limits))


def _check_zip(path: Path, tally: _Tally) -> ArchiveSummary:
    if not zipfile.is_zipfile(path):
        raise ArchiveError("truncated zip archive (its central directory is missing)")
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            files = [info for info in infos if not info.is_dir()]
            for info in infos:
                _check_zip_info(info)
                if info.is_dir():
                    safe_member_name(info.filename)
                else:
                    tally.add_member(info.filename, info.file_size)
            if not files:
                raise ArchiveError("the archive holds no files")
            # The declared sizes passed; now count what really comes out.
            tally.bytes = 0
            for info in files:
                with archive.open(info) as member:
                    while chunk := member.read(_CHUNK):
                        tally.add_bytes(len(chunk))
    except ArchiveError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
        raise ArchiveError(f"corrupt or truncated zip archive: {exc}") from exc
    except RuntimeError as exc:  # an encrypted member
        raise ArchiveError(f"unreadable zip member: {exc}") from exc
    return ArchiveSummary("zip", tally.members, tally.bytes)


def _check_zip_info(info: zipfile.ZipInfo) -> None:
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise ArchiveError(f"symbolic link member: {info.filename[:200]!r}")
    if info.flag_bits & 0x1:
        raise ArchiveError(f"encrypted member: {info.filename[:200]!r}")


def _check_tar_info(member: tarfile.TarInfo) -> None:
    if member.issym() or member.islnk():
        kind = "symbolic" if member.issym() else "hard"
        raise ArchiveError(f"{kind} link member: {member.name[:200]!r}")
    if not (member.isfile() or member.isdir()):
        raise ArchiveError(f"special file member (device or fifo): {member.name[:200]!r}")


def _check_tar(path: Path, gz: bool, tally: _Tally) -> ArchiveSummary:
    # A gzip stream is read through (that finds a truncated or corrupt one); a plain tar's
    # members are seeked over, their data checked to lie within the file.
    size = path.stat().st_size
    try:
        with tarfile.open(path, mode="r|gz" if gz else "r:") as archive:
            for member in archive:
                _check_tar_info(member)
                if member.isdir():
                    safe_member_name(member.name)
                    continue
                tally.add_member(member.name, member.size)
                if not gz:
                    if member.offset_data + member.size > size:
                        raise ArchiveError(f"truncated tar: {member.name[:200]!r} is cut short")
                    continue
                extracted = archive.extractfile(member)
                assert extracted is not None  # a regular file
                while extracted.read(_CHUNK):
                    pass
            end = archive.offset
    except ArchiveError:
        raise
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise ArchiveError(f"corrupt or truncated tar archive: {exc}") from exc
    if not gz and not _has_end_marker(path, end):
        raise ArchiveError("truncated tar: it has no end-of-archive marker")
    if tally.members == 0:
        raise ArchiveError("the archive holds no files")
    return ArchiveSummary("tar", tally.members, tally.bytes)


def _has_end_marker(path: Path, offset: int) -> bool:
    """Whether a zero block (the end-of-archive marker) follows the last member."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(512) == bytes(512)


def is_tar_path(path: Path) -> bool:
    return archive_suffix(path.name) in (".tar", ".tar.gz")


class TarMembers:
    """The files of a .tar or .tar.gz, listed and read by member name, never extracted.

    A plain tar is read in place (members are seeked to). A gzip stream cannot be seeked
    cheaply, so a .tar.gz is decompressed once, on open, to a private temporary .tar in
    `spool_dir` (default: the system's temporary folder), removed on close. The checks of
    `check_archive` apply: links, special files, unsafe or duplicate names refuse it.
    One instance serves one process: after a fork the tar is reopened.
    """

    def __init__(
        self, path: Path, spool_dir: Path | None = None, limits: ArchiveLimits | None = None
    ) -> None:
        self.path = Path(path)
        self._spool: Path | None = None
        self._owner = os.getpid()
        self._tar: tarfile.TarFile | None = None
        self._pid: int | None = None
        if archive_suffix(self.path.name) == ".tar.gz":
            self._spool = _decompress(self.path, spool_dir)
        try:
            self._members = self._index(limits or ArchiveLimits())
        except BaseException:
            self.close()
            raise

    def _index(self, limits: ArchiveLimits) -> dict[str, tarfile.TarInfo]:
        tally = _Tally(limits)
        members: dict[str, tarfile.TarInfo] = {}
        try:
            for member in self._archive().getmembers():
                _check_tar_info(member)
                if member.isdir():
                    safe_member_name(member.name)
                else:
                    tally.add_member(member.name, member.size)
                    # `tar -C dir .` stores "./cls/a.jpg": keyed as "cls/a.jpg".
                    members[member.name.removeprefix("./")] = member
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise ArchiveError(f"corrupt or truncated tar archive: {exc}") from exc
        return members

    def _archive(self) -> tarfile.TarFile:
        if self._tar is None or self._pid != os.getpid():
            try:
                self._tar = tarfile.open(self._spool or self.path, mode="r:")  # noqa: SIM115
            except (tarfile.TarError, OSError) as exc:
                raise ArchiveError(f"not a readable tar archive: {exc}") from exc
            self._pid = os.getpid()
        return self._tar

    def names(self) -> list[str]:
        """The member names of its regular files (without a leading "./"), in archive order."""
        return list(self._members)

    def read(self, name: str) -> bytes:
        """The bytes of member `name`; KeyError if it is not a file of the archive."""
        extracted = self._archive().extractfile(self._members[name])
        assert extracted is not None
        return extracted.read()

    def close(self) -> None:
        if self._tar is not None and self._pid == os.getpid():
            self._tar.close()
        self._tar = None
        if self._spool is not None and self._owner == os.getpid():
            self._spool.unlink(missing_ok=True)
            self._spool = None

    def __enter__(self) -> TarMembers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _decompress(path: Path, spool_dir: Path | None) -> Path:
    handle, name = tempfile.mkstemp(suffix=".tar", prefix="tinyres-", dir=spool_dir)
    spool = Path(name)
    try:
        with os.fdopen(handle, "wb") as out, gzip.open(path, "rb") as source:
            shutil.copyfileobj(source, out, _CHUNK)
    except (OSError, EOFError, zlib.error) as exc:
        spool.unlink(missing_ok=True)
        raise ArchiveError(f"corrupt or truncated gzip stream: {exc}") from exc
    except BaseException:
        spool.unlink(missing_ok=True)
        raise
    return spool

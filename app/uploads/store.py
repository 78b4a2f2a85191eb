"""The tus upload store: records and partial files under `<data root>/uploads/.partial/`.

An upload is three files named by its id: `<id>.json` (what was asked for, when it
expires, and once accepted the source it became), `<id>.part` (the bytes received: the
upload's offset is this file's size on disk, nothing else), and `<id>.lock` (see locks.py).
`names/<name>` reserves a name for a pending upload, created exclusively, so two uploads
cannot both take a name. Everything stays inside the upload area; an accepted archive is
hard-linked to `uploads/<name><suffix>` (atomic, never overwriting), then unlinked here;
with an object store it is uploaded under that key instead (receive.py), and the upload
area is this API host's scratch.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from app.uploads.errors import UploadConflict, UploadNotFound
from app.uploads.locks import try_upload_lock
from app.uploads.metadata import UploadRequest
from core import layout
from core.archives import SUFFIXES
from core.config import Settings
from core.files import files_for

PARTIAL = ".partial"


@dataclass(frozen=True)
class UploadRecord:
    id: str
    name: str
    filename: str
    suffix: str
    length: int
    metadata: dict[str, str]
    created_at: float
    expires_at: float
    source: str | None = None  # set once accepted: the path relative to the data root

    @property
    def finished(self) -> bool:
        return self.source is not None


class UploadStore:
    """Creates, finds, expires and removes uploads (the byte-receiving part: receive.py)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = layout.uploads_root(settings)
        self.partial = self.root / PARTIAL
        self.names = self.partial / "names"
        self.expiry_seconds = settings.upload_expiry_hours * 3600

    # Paths

    def record_path(self, upload_id: str) -> Path:
        return self.partial / f"{upload_id}.json"

    def part_path(self, upload_id: str) -> Path:
        return self.partial / f"{upload_id}.part"

    def lock_path(self, upload_id: str) -> Path:
        return self.partial / f"{upload_id}.lock"

    def source_path(self, name: str, suffix: str) -> Path:
        return self.root / f"{name}{suffix}"

    # Records

    def get(self, upload_id: str) -> UploadRecord:
        """The upload's record; UploadNotFound if it does not exist or has expired."""
        try:
            record = UploadRecord(**json.loads(self.record_path(upload_id).read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            raise UploadNotFound(f"no upload {upload_id[:64]!r} (unknown or expired)") from None
        if record.expires_at < time.time():
            raise UploadNotFound(f"upload {upload_id[:64]!r} has expired")
        return record

    def offset(self, record: UploadRecord) -> int:
        if record.finished:
            return record.length
        try:
            return self.part_path(record.id).stat().st_size
        except FileNotFoundError:
            return 0

    def save(self, record: UploadRecord) -> None:
        path = self.record_path(record.id)
        temp = path.with_suffix(f".json.{secrets.token_hex(4)}")
        temp.write_text(json.dumps(asdict(record)))
        os.replace(temp, path)

    def touch(self, record: UploadRecord) -> UploadRecord:
        """The record with its expiry pushed back: an upload expires when left untouched."""
        touched = replace(record, expires_at=time.time() + self.expiry_seconds)
        self.save(touched)
        return touched

    # Creation and removal

    def create(self, request: UploadRequest, length: int) -> UploadRecord:
        """A new, empty upload for `request.name`.

        Raises:
            UploadConflict: An accepted upload or a pending one already has that name.
        """
        self.names.mkdir(parents=True, exist_ok=True)
        self.sweep()
        self._check_name_free(request.name)
        now = time.time()
        record = UploadRecord(
            id=secrets.token_urlsafe(18),
            name=request.name,
            filename=request.filename,
            suffix=request.suffix,
            length=length,
            metadata=request.metadata,
            created_at=now,
            expires_at=now + self.expiry_seconds,
        )
        self._reserve(request.name, record.id)
        try:
            self.part_path(record.id).touch(exist_ok=False)
            self.save(record)
        except BaseException:
            self.release_name(request.name, record.id)
            raise
        return record

    def _check_name_free(self, name: str) -> None:
        files = files_for(self.settings)
        for suffix in set(SUFFIXES.values()):
            path = self.source_path(name, suffix)
            if files.exists(files.key_of(path)) if files.remote else path.exists():
                raise UploadConflict(f"name {name!r} is taken: uploads/{name}{suffix} exists")

    def _reserve(self, name: str, upload_id: str) -> None:
        path = self.names / name
        for _ in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                holder = path.read_text().strip() if path.exists() else ""
                if holder and self._is_pending(holder):
                    raise UploadConflict(
                        f"name {name!r} is taken by an unfinished upload; resume or delete it"
                    ) from None
                path.unlink(missing_ok=True)  # its upload is gone or expired
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(upload_id)
            return
        raise UploadConflict(f"name {name!r} is being taken by another upload")

    def _is_pending(self, upload_id: str) -> bool:
        try:
            return not self.get(upload_id).finished
        except UploadNotFound:
            return False

    def release_name(self, name: str, upload_id: str) -> None:
        path = self.names / name
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            if path.read_text().strip() == upload_id:
                path.unlink(missing_ok=True)

    def remove(self, record: UploadRecord) -> None:
        """Forget the upload and delete its bytes (the caller holds its lock)."""
        self.part_path(record.id).unlink(missing_ok=True)
        self.record_path(record.id).unlink(missing_ok=True)
        self.release_name(record.name, record.id)
        self.lock_path(record.id).unlink(missing_ok=True)

    def sweep(self) -> int:
        """Remove every expired upload (and stray files); returns how many were removed."""
        if not self.partial.is_dir():
            return 0
        now, removed = time.time(), 0
        for path in self.partial.glob("*.json"):
            upload_id = path.stem
            try:
                record = UploadRecord(**json.loads(path.read_text()))
            except (OSError, ValueError, TypeError):
                record = None
            if record is not None and record.expires_at >= now:
                continue
            with try_upload_lock(self.lock_path(upload_id)) as held:
                if not held:
                    continue  # being written right now: not stale
                if record is not None:
                    self.remove(record)
                else:
                    for stale in (path, self.part_path(upload_id), self.lock_path(upload_id)):
                        stale.unlink(missing_ok=True)
                removed += 1
        for part in self.partial.glob("*.part"):  # bytes whose record never got written
            if not self.record_path(part.stem).exists() and part.stat().st_mtime < now - 3600:
                part.unlink(missing_ok=True)
        return removed

"""Domain errors of uploads and sources; app/errors.py maps each to its HTTP status."""

from __future__ import annotations


class UploadError(Exception):
    """An upload or source request refused, with a reason meant for the user."""

    def __init__(self, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        # Every answer of the tus routes carries Tus-Resumable, errors included.
        self.headers = {"Tus-Resumable": "1.0.0", **(headers or {})}


class UploadInvalid(UploadError):
    """Bad tus headers or Upload-Metadata (400)."""


class UploadNotFound(UploadError):
    """No such upload, or it expired (404)."""


class UploadConflict(UploadError):
    """Name taken, wrong Upload-Offset, or a finished upload (409)."""


class ArchiveRefused(UploadError):
    """The finished archive failed a check (422); the upload is removed."""


class UploadTooLarge(UploadError):
    """Past Upload-Length or the size limit (413)."""


class UploadBusy(UploadError):
    """Another request holds the upload for longer than we wait (423)."""


class TusVersionUnsupported(UploadError):
    """Tus-Resumable missing or not 1.0.0 (412)."""


class WrongContentType(UploadError):
    """A PATCH whose body is not application/offset+octet-stream (415)."""


class SourceNotFound(UploadError):
    """No such source (404)."""


class SourceInUse(UploadError):
    """A queued or running job reads the source (409)."""


class SourceNotDeletable(UploadError):
    """A source that was put on the server's disk, not uploaded (403)."""

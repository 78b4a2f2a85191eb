"""The export formats, their files under ``layout.exports_root`` and their metadata.

No TensorFlow here: the API lists and serves exports through this module.

An export is offered only when its metadata file exists and names the artifact's size: the
job writes the artifact first (atomically, after its check passed) and the metadata last,
so a failed or interrupted job leaves nothing that looks finished, and a re-export that
replaces the artifact is never listed with the old one's numbers.

With an object store the same holds for the objects (`offer`: the artifact is published,
its metadata last; `withdraw_offer` removes the metadata object first), and the API reads
them from the store (`stored_export`, `stored_exports`, `local_artifact`: through this
host's cache). With the local backend those are `read_export` and `list_exports` on the
data root.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime
from pathlib import Path
from typing import Final, Literal, get_args

from pydantic import BaseModel, Field, ValidationError

from core import layout
from core.config import Settings
from core.files import files_for
from core.job_files import job_key
from core.storage import ObjectNotFound

ExportFormat = Literal["saved_model", "onnx", "litert"]
FORMATS: Final[tuple[str, ...]] = get_args(ExportFormat)

# The file each format is served as, and its media type.
ARTIFACT_FILES: Final[dict[str, str]] = {
    "saved_model": "saved_model.zip",
    "onnx": "model.onnx",
    "litert": "model.tflite",
}
MEDIA_TYPES: Final[dict[str, str]] = {
    "saved_model": "application/zip",
    "onnx": "application/octet-stream",
    "litert": "application/octet-stream",
}
# The runtime each artifact is checked in before it is offered.
RUNTIMES: Final[dict[str, str]] = {
    "saved_model": "tensorflow",
    "onnx": "onnxruntime",
    "litert": "ai-edge-litert",
}
MIN_AGREEMENT: Final = 0.99
TEMP_PREFIX: Final = ".tmp-"
EXPORTS_FOLDER: Final = "exports"  # layout.exports_root, relative to the job's folder


class ExportInfo(BaseModel):
    """One checked export, as ``GET /models/{id}/exports`` lists it."""

    format: ExportFormat
    bytes: int = Field(ge=0, description="size of the artifact file")
    agreement: float = Field(
        ge=0.0,
        le=1.0,
        description="fraction of the val split on which the artifact, run by its own "
        "runtime, ranks the same class first as the served model",
    )
    created_at: datetime
    images: int = Field(ge=0, description="val images the agreement was measured on")
    runtime: str = Field(description="the runtime the artifact was checked in")


class ExportList(BaseModel):
    exports: list[ExportInfo]


def artifact_path(root: Path, fmt: str) -> Path:
    return root / ARTIFACT_FILES[fmt]


def metadata_path(root: Path, fmt: str) -> Path:
    return root / f"{fmt}.json"


def download_name(model_id: str, fmt: str) -> str:
    """The file name a download is offered under: the model id and the format's suffix."""
    suffix = Path(ARTIFACT_FILES[fmt]).suffix
    return f"{model_id}-{fmt}{suffix}" if fmt == "saved_model" else f"{model_id}{suffix}"


def read_export(root: Path, fmt: str) -> ExportInfo | None:
    """The metadata of the finished export of ``fmt`` under ``root``, or None.

    None as well when the artifact is missing or its size is not the one the metadata
    names (a re-export between its two renames).
    """
    try:
        info = ExportInfo.model_validate_json(metadata_path(root, fmt).read_bytes())
        size = artifact_path(root, fmt).stat().st_size
    except (OSError, ValidationError):
        return None
    return info if info.format == fmt and info.bytes == size else None


def list_exports(root: Path) -> list[ExportInfo]:
    """Every finished export under ``root``, in ``FORMATS`` order."""
    return [info for fmt in FORMATS if (info := read_export(root, fmt)) is not None]


def write_metadata(root: Path, info: ExportInfo) -> None:
    """Write the metadata file atomically: from now on the export is offered."""
    path = metadata_path(root, info.format)
    temp = root / f"{TEMP_PREFIX}{uuid.uuid4().hex}-{path.name}"
    temp.write_text(info.model_dump_json(indent=2) + "\n")
    os.replace(temp, path)


def withdraw(root: Path, fmt: str) -> None:
    """Stop offering the export of ``fmt`` (its metadata goes first, then the artifact)."""
    for path in (metadata_path(root, fmt), artifact_path(root, fmt)):
        path.unlink(missing_ok=True)


def _key(model_id: str, name: str) -> str:
    return job_key(model_id, EXPORTS_FOLDER, name)


def offer(settings: Settings, model_id: str, fmt: str) -> None:
    """Publish a committed local export: the artifact, then its metadata (from now on the
    store offers it); the local copies are then scratch, and removed."""
    files = files_for(settings)
    if not files.remote:
        return
    root = layout.exports_root(settings, model_id)
    for path in (artifact_path(root, fmt), metadata_path(root, fmt)):
        files.publish(path)
        files.discard_local(path)


def withdraw_offer(settings: Settings, model_id: str, fmt: str) -> None:
    """Stop offering the export of ``fmt`` in the store (its metadata object goes)."""
    files = files_for(settings)
    if files.remote:
        files.store.delete(_key(model_id, metadata_path(Path(), fmt).name))


def stored_export(settings: Settings, model_id: str, fmt: str) -> ExportInfo | None:
    """`read_export` of the model's exports, in the store."""
    files = files_for(settings)
    if not files.remote:
        return read_export(layout.exports_root(settings, model_id), fmt)
    try:
        info = ExportInfo.model_validate_json(
            files.get_bytes(_key(model_id, metadata_path(Path(), fmt).name))
        )
        size = files.info(_key(model_id, ARTIFACT_FILES[fmt])).size
    except (ObjectNotFound, ValidationError):
        return None
    return info if info.format == fmt and info.bytes == size else None


def stored_exports(settings: Settings, model_id: str) -> list[ExportInfo]:
    """`list_exports` of the model's exports, in the store."""
    return [info for fmt in FORMATS if (info := stored_export(settings, model_id, fmt))]


def local_artifact(settings: Settings, model_id: str, info: ExportInfo) -> Path:
    """A local file of the offered artifact `info` (checked against its recorded size)."""
    files = files_for(settings)
    if not files.remote:
        return artifact_path(layout.exports_root(settings, model_id), info.format)
    return files.local(_key(model_id, ARTIFACT_FILES[info.format]), size=info.bytes)

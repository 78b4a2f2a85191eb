"""Where things live under the data root. One place, so the API and the workers agree.

<data_root>/
    tinyres.sqlite, broker.sqlite      embedded job store and broker
    datasets/<name>/manifest.json      a dataset exists iff its manifest does
    datasets/<name>/*.tfrecord[.gz]
    jobs/<job id>/checkpoints/epoch-0003.keras
    jobs/<job id>/tensorboard/
    jobs/<job id>/model.keras          what POST /predict serves
    jobs/<job id>/classes.json         [{index, wnid, label}] of that model
    jobs/<job id>/evaluation.json      the model's evaluation on its val split (+ confusion.png)
    jobs/<job id>/exports/             checked export artifacts + <format>.json (docs/EXPORTS.md)
    jobs/<job id>/predictions.csv      what a batch prediction job produced
    sources/<name>[.zip|.tar|.tar.gz]  sources put there by hand (listed by GET /sources)
    uploads/<name>.zip|.tar|.tar.gz    accepted tus uploads: sources too
    uploads/.partial/                  unfinished uploads (removed after their expiry)
"""

from __future__ import annotations

import re
from pathlib import Path

from core.config import Settings
from core.manifest import MANIFEST_FILE

_CHECKPOINT_RE = re.compile(r"^epoch-(\d{4,})\.keras$")


def datasets_root(settings: Settings) -> Path:
    return settings.resolved_data_root / "datasets"


def dataset_dir(settings: Settings, name: str) -> Path:
    return datasets_root(settings) / name


def manifest_path(settings: Settings, name: str) -> Path:
    return dataset_dir(settings, name) / MANIFEST_FILE


def uploads_root(settings: Settings) -> Path:
    """The upload area: accepted uploads `uploads/<name>.<ext>` (sources), and below
    `uploads/.partial/` the unfinished ones (app/uploads)."""
    return settings.resolved_data_root / "uploads"


def sources_root(settings: Settings) -> Path:
    """Where datasets put on the server's disk by hand are listed from (GET /sources)."""
    return settings.resolved_data_root / "sources"


def job_dir(settings: Settings, job_id: str) -> Path:
    return settings.resolved_data_root / "jobs" / job_id


def checkpoints_dir(settings: Settings, job_id: str) -> Path:
    return job_dir(settings, job_id) / "checkpoints"


def checkpoint_name(epoch: int) -> str:
    return f"epoch-{epoch:04d}.keras"


def checkpoint_epochs(settings: Settings, job_id: str) -> list[int]:
    """Epochs (1-based, i.e. epochs completed) that have a finished checkpoint, ascending."""
    folder = checkpoints_dir(settings, job_id)
    if not folder.is_dir():
        return []
    epochs = [
        int(match.group(1))
        for match in (_CHECKPOINT_RE.match(p.name) for p in folder.iterdir())
        if match
    ]
    return sorted(epochs)


def model_path(settings: Settings, job_id: str) -> Path:
    return job_dir(settings, job_id) / "model.keras"


def classes_path(settings: Settings, job_id: str) -> Path:
    return job_dir(settings, job_id) / "classes.json"


def export_dir(settings: Settings, job_id: str) -> Path:
    return job_dir(settings, job_id) / "export"


def evaluation_path(settings: Settings, job_id: str) -> Path:
    """The model's own evaluation (its final weights on its dataset's val split)."""
    return job_dir(settings, job_id) / "evaluation.json"


def confusion_path(settings: Settings, job_id: str) -> Path:
    return job_dir(settings, job_id) / "confusion.png"


def exports_root(settings: Settings, job_id: str) -> Path:
    """Checked export artifacts of a model (``POST /models/{id}/exports``), one per format."""
    return job_dir(settings, job_id) / "exports"


def predictions_path(settings: Settings, job_id: str) -> Path:
    """The CSV a batch prediction job (kind ``predict``) produces."""
    return job_dir(settings, job_id) / "predictions.csv"

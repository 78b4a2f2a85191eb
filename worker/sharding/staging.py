"""The staging folder of a dataset being sharded, and its temporary files.

``<dataset>/.staging/`` holds the plan (``plan.json``) and one sidecar per written shard
(``<shard file>.json``); ``finalize`` removes it once the manifest is written. Every file
is written to a ``*.tmp-<random>`` name first and renamed into place, so a writer killed
at any moment leaves only temporary files, which ``cleanup_temp`` removes.
"""

from __future__ import annotations

import shutil
from os import PathLike
from pathlib import Path

from core.manifest import TEMP_MARK, write_text_atomic

STAGING = ".staging"
PLAN_FILE = "plan.json"

__all__ = [
    "PLAN_FILE",
    "STAGING",
    "TEMP_MARK",
    "cleanup_temp",
    "plan_path",
    "remove_staging",
    "sidecar_path",
    "temp_path",
    "write_text_atomic",
]


def staging_dir(dataset_dir: str | PathLike[str]) -> Path:
    return Path(dataset_dir) / STAGING


def plan_path(dataset_dir: str | PathLike[str]) -> Path:
    return staging_dir(dataset_dir) / PLAN_FILE


def sidecar_path(dataset_dir: str | PathLike[str], shard_file: str) -> Path:
    return staging_dir(dataset_dir) / f"{shard_file}.json"


def temp_path(path: Path, token: str) -> Path:
    return path.with_name(f"{path.name}{TEMP_MARK}{token}")


def cleanup_temp(dataset_dir: str | PathLike[str]) -> list[Path]:
    """Remove the temporary files that killed writers left behind; returns their paths.

    Only call this when no writer of the dataset is running: a live writer's file would go.
    """
    removed = []
    for where in (Path(dataset_dir), staging_dir(dataset_dir)):
        if not where.is_dir():
            continue
        for path in where.iterdir():
            if TEMP_MARK in path.name:
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def remove_staging(dataset_dir: str | PathLike[str]) -> None:
    shutil.rmtree(staging_dir(dataset_dir), ignore_errors=True)

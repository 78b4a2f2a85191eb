"""Tests of the TensorFlow-free architecture settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.architecture import ArchitectureConfig
from model.config import WRITEUP_LEVELS, WRITEUP_WIDTH

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_the_writeup_network() -> None:
    assert ArchitectureConfig() == ArchitectureConfig(width=64, levels=[4, 6, 3, 2])
    assert (WRITEUP_WIDTH, WRITEUP_LEVELS) == (64, (4, 6, 3, 2))


@pytest.mark.parametrize(
    ("fields", "shown"),
    [
        ({"width": 6}, "Received: width=6"),
        ({"width": 0}, "Received: width=0"),
        ({"width": 516}, "Received: width=516"),
        ({"levels": []}, "levels must have 1 to 6 entries. Received: levels=[]"),
        ({"levels": [1] * 7}, "Received: levels=[1, 1, 1, 1, 1, 1, 1]"),
        ({"levels": [2, -1]}, "Received: levels=[2, -1]"),
        ({"levels": [65]}, "Received: levels=[65]"),
    ],
)
def test_invalid_fields_show_the_value(fields: dict, shown: str) -> None:
    with pytest.raises(ValidationError) as info:
        ArchitectureConfig(**fields)
    assert shown in str(info.value)


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError):
        ArchitectureConfig(depth=3)  # type: ignore[call-arg]


def test_json_round_trip() -> None:
    arch = ArchitectureConfig(width=8, levels=[1, 0, 2])
    assert ArchitectureConfig.model_validate_json(arch.model_dump_json()) == arch


def test_defaults_are_not_shared() -> None:
    arch = ArchitectureConfig()
    arch.levels.append(1)
    assert ArchitectureConfig().levels == [4, 6, 3, 2]


def test_config_does_not_import_tensorflow() -> None:
    code = (
        "import sys, model.config; "
        "assert not {'tensorflow', 'keras'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)

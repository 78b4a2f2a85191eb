"""Tests of `TrainConfig`: presets, overrides, one set of bounds, the staircase."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.architecture import ArchitectureConfig
from core.train_config import TrainConfig, preset, preset_architecture

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_the_writeup_preset() -> None:
    plain = TrainConfig(dataset="d")
    writeup = preset("writeup", "d")
    assert plain.model_dump(exclude={"preset"}) == writeup.model_dump(exclude={"preset"})
    assert (plain.width, plain.levels, plain.epochs, plain.batch_size) == (
        64,
        [4, 6, 3, 2],
        72,
        128,
    )
    assert (plain.learning_rate, plain.momentum, plain.lr_decay_epoch) == (0.01, 0.9, 64)
    assert plain.architecture == ArchitectureConfig() == preset_architecture("writeup")


def test_half_preset_and_overrides() -> None:
    half = preset("half", "d", epochs=3)
    assert (half.width, half.levels, half.epochs) == (32, [4, 6, 3, 2], 3)
    assert preset("half", "d", width=16).width == 16  # the request's fields win
    assert preset_architecture("half") == ArchitectureConfig(width=32)
    with pytest.raises(ValidationError):
        TrainConfig(dataset="d", preset="huge")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "shown"),
    [
        ({"width": 6}, "Received: width=6"),
        ({"levels": [65]}, "Received: levels=[65]"),
        ({"levels": [2, -1]}, "Received: levels=[2, -1]"),
        ({"levels": [1] * 7}, "at most 6 items"),
        ({"initial_epoch": 1}, "initial_epoch needs resume_from"),
        ({"resume_from": "j", "initial_epoch": 2, "epochs": 2}, "initial_epoch must be below"),
        ({"colour": "red"}, "Extra inputs are not permitted"),
    ],
)
def test_bounds_are_the_networks(fields: dict, shown: str) -> None:
    with pytest.raises(ValidationError) as info:
        TrainConfig(dataset="d", **fields)
    assert shown in str(info.value)


def test_staircase_learning_rate() -> None:
    config = TrainConfig(dataset="d", learning_rate=0.05, lr_decay_epoch=2, lr_decay=0.1)
    rates = [config.learning_rate_at(epoch) for epoch in range(5)]
    assert rates == pytest.approx([0.05, 0.05, 0.005, 0.005, 0.0005])


def test_stored_params_round_trip() -> None:
    config = preset("half", "d", epochs=3, resume_from="j", initial_epoch=1)
    assert TrainConfig.model_validate(config.model_dump()) == config


def test_does_not_import_tensorflow() -> None:
    code = (
        "import sys, core.train_config; "
        "assert not {'tensorflow', 'keras'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)

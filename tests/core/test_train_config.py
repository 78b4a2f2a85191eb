"""Tests of `TrainConfig`: presets, overrides, one set of bounds, the staircase."""

from __future__ import annotations

import itertools
import math
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


def test_writeup_recipe_is_the_default_and_unchanged() -> None:
    plain = TrainConfig(dataset="d")
    named = TrainConfig(dataset="d", recipe="writeup")
    assert plain.recipe == "writeup"
    assert plain.model_dump() == named.model_dump()
    assert (plain.warmup_epochs, plain.label_smoothing, plain.weight_decay) == (0, 0.0, 0.0)
    assert (plain.l2, plain.crop_padding) == (0.01, 0)
    # The write-up's staircase, with no warm-up: 0.01 until epoch 64, then 0.001.
    assert [plain.learning_rate_at(e) for e in (0, 1, 63, 64, 71)] == pytest.approx(
        [0.01, 0.01, 0.01, 0.001, 0.001]
    )


def test_strong_recipe_fills_its_defaults_and_the_request_wins() -> None:
    strong = TrainConfig(dataset="d", recipe="strong")
    assert (strong.learning_rate, strong.warmup_epochs, strong.label_smoothing) == (0.05, 5, 0.1)
    assert (strong.weight_decay, strong.l2, strong.crop_padding) == (5e-3, 0.0, 4)
    # The values the recipe filled in count as the request's own (resume inherits the rest).
    assert {"learning_rate", "warmup_epochs", "l2"} <= strong.model_fields_set
    assert "batch_size" not in strong.model_fields_set
    own = TrainConfig(dataset="d", recipe="strong", learning_rate=0.2, preset="half")
    assert (own.learning_rate, own.width, own.label_smoothing) == (0.2, 32, 0.1)


def test_strong_schedule_warms_up_then_follows_a_cosine() -> None:
    config = TrainConfig(dataset="d", recipe="strong", epochs=10, warmup_epochs=2, learning_rate=1)
    rates = [config.learning_rate_at(epoch) for epoch in range(10)]
    # Linear warm-up: (e + 1) / 2, then 0.5 * (1 + cos(pi * (e - 2) / 8)).
    expected = [0.5, 1.0] + [0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(8)]
    assert rates == pytest.approx(expected)
    assert rates[1] == max(rates) and all(a > b for a, b in itertools.pairwise(rates[2:]))
    assert rates[-1] > 0
    # The same epoch gives the same rate, whatever came before (resume continues it).
    again = TrainConfig.model_validate(config.model_dump())
    assert [again.learning_rate_at(e) for e in range(5, 10)] == rates[5:]


def test_warm_up_applies_to_the_staircase_too() -> None:
    config = TrainConfig(dataset="d", warmup_epochs=4, lr_decay_epoch=6, learning_rate=0.08)
    rates = [config.learning_rate_at(epoch) for epoch in range(8)]
    assert rates == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.08, 0.08, 0.008, 0.008])


@pytest.mark.parametrize(
    "fields",
    [
        {"recipe": "fancy"},
        {"label_smoothing": 1.0},
        {"weight_decay": -0.1},
        {"warmup_epochs": -1},
    ],
)
def test_recipe_fields_are_bounded(fields: dict) -> None:
    with pytest.raises(ValidationError):
        TrainConfig(dataset="d", **fields)

"""``TrainConfig``: the one schema of a train job's hyper-parameters.

The API body (``POST /jobs/train``), the worker, the tests and the benchmarks all use it, so
there is one set of defaults and one set of bounds. The architecture bounds are the
network's own (``core.architecture.ArchitectureConfig``), checked here without TensorFlow.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.architecture import ArchitectureConfig
from core.names import NAME_PATTERN
from model.config import MAX_LEVELS, MAX_WIDTH, MIN_WIDTH, WRITEUP_LEVELS, WRITEUP_WIDTH

PresetName = Literal["writeup", "half"]

# Named starting points; a request's own fields override them.
PRESETS: dict[str, dict[str, Any]] = {
    # The write-up's flags: width 64, levels [4, 6, 3, 2], 72 epochs, batch 128, SGD 0.01
    # with momentum 0.9, x0.1 at epoch 64, L2 0.01 on the dense kernel.
    "writeup": {},
    # The write-up's half-width variant.
    "half": {"width": 32},
}


class TrainConfig(BaseModel):
    """A train job's parameters, validated once. Defaults are the ``writeup`` preset."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(pattern=NAME_PATTERN, description="a sharded dataset's name")
    preset: PresetName | None = Field(
        default=None,
        description="start from a named preset (writeup: the write-up's values; half: half "
        "width); fields given in the request override it",
    )
    width: int = Field(
        default=WRITEUP_WIDTH, ge=MIN_WIDTH, le=MAX_WIDTH, description="a multiple of 4"
    )
    levels: list[int] = Field(
        default_factory=lambda: list(WRITEUP_LEVELS), min_length=1, max_length=MAX_LEVELS
    )
    epochs: int = Field(default=72, ge=1, le=10_000, description="total epochs of the run")
    batch_size: int = Field(default=128, ge=1, le=4096)
    learning_rate: float = Field(default=0.01, gt=0, le=10)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    lr_decay_epoch: int = Field(default=64, ge=1, le=10_000)
    lr_decay: float = Field(default=0.1, gt=0, le=1)
    l2: float = Field(default=0.01, ge=0, le=1)
    resume_from: str | None = Field(default=None, pattern=NAME_PATTERN)
    initial_epoch: int | None = Field(default=None, ge=0, le=10_000)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        name = data.get("preset") if isinstance(data, dict) else None
        if isinstance(name, str) and name in PRESETS:
            return {**PRESETS[name], **data}
        return data

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        # The network's own bounds, so the API and the model cannot disagree.
        ArchitectureConfig(width=self.width, levels=self.levels)
        if self.initial_epoch is not None and self.resume_from is None:
            raise ValueError("initial_epoch needs resume_from")
        if self.initial_epoch is not None and self.initial_epoch >= self.epochs:
            raise ValueError(
                f"initial_epoch must be below epochs. Received: initial_epoch="
                f"{self.initial_epoch}, epochs={self.epochs}"
            )
        return self

    @property
    def architecture(self) -> ArchitectureConfig:
        return ArchitectureConfig(width=self.width, levels=self.levels)

    def learning_rate_at(self, epoch: int) -> float:
        """The write-up's staircase: lr0 * decay^floor(epoch / lr_decay_epoch), epoch 0-based.

        A function of the epoch alone, so a resumed run continues the schedule exactly.
        """
        return self.learning_rate * self.lr_decay ** (epoch // self.lr_decay_epoch)


def preset(name: PresetName, dataset: str, **overrides: Any) -> TrainConfig:
    """A named preset for ``dataset``, with ``overrides`` applied (tests, benches)."""
    return TrainConfig.model_validate({"dataset": dataset, "preset": name, **overrides})


def preset_architecture(name: PresetName) -> ArchitectureConfig:
    """The network of a named preset (benches and tests that build one without a job)."""
    fields = TrainConfig.model_fields
    values = {
        key: PRESETS[name].get(key, fields[key].get_default(call_default_factory=True))
        for key in ("width", "levels")
    }
    return ArchitectureConfig(**values)

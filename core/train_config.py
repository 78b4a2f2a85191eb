"""``TrainConfig``: the one schema of a train job's hyper-parameters.

The API body (``POST /jobs/train``), the worker, the tests and the benchmarks all use it, so
there is one set of defaults and one set of bounds. The architecture bounds are the
network's own (``core.architecture.ArchitectureConfig``), checked here without TensorFlow.

Two recipes (``docs/RECIPES.md`` gives the source of each choice): ``writeup``, the
write-up's (the default, unchanged), and ``strong``. A recipe names the learning-rate
schedule's shape and the augmentation; its numeric defaults (``RECIPES``) fill the fields a
request leaves out, as a preset's do.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.architecture import ArchitectureConfig
from core.names import NAME_PATTERN
from model.config import MAX_LEVELS, MAX_WIDTH, MIN_WIDTH, WRITEUP_LEVELS, WRITEUP_WIDTH

PresetName = Literal["writeup", "half"]
RecipeName = Literal["writeup", "strong"]

# Named starting points; a request's own fields override them.
PRESETS: dict[str, dict[str, Any]] = {
    # The write-up's flags: width 64, levels [4, 6, 3, 2], 72 epochs, batch 128, SGD 0.01
    # with momentum 0.9, x0.1 at epoch 64, L2 0.01 on the dense kernel.
    "writeup": {},
    # The write-up's half-width variant.
    "half": {"width": 32},
}

# The numeric defaults of each recipe, applied when a request names the recipe (and, for
# ``writeup``, the field defaults below). A request's own fields override them.
RECIPES: dict[str, dict[str, Any]] = {
    # The write-up: a constant 0.01 with a x0.1 staircase, L2 0.01 on the dense kernel only.
    "writeup": {
        "learning_rate": 0.01,
        "warmup_epochs": 0,
        "label_smoothing": 0.0,
        "weight_decay": 0.0,
        "l2": 0.01,
    },
    # Linear warm-up then cosine, label smoothing 0.1, decoupled weight decay on every
    # kernel instead of L2; 4-pixel padded random crops (in the network) besides the flips.
    # weight_decay is Keras's (each step shrinks a kernel by learning_rate * weight_decay):
    # 5e-3 at lr 0.05 matches the per-step shrink of the usual coupled L2 5e-4 under
    # momentum 0.9 (lr * 5e-4 / (1 - 0.9)).
    "strong": {
        "learning_rate": 0.05,
        "warmup_epochs": 5,
        "label_smoothing": 0.1,
        "weight_decay": 5e-3,
        "l2": 0.0,
    },
}

# What the strong recipe's network crops from: each image padded by this many pixels.
STRONG_CROP_PADDING = 4


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
    l2: float = Field(default=0.01, ge=0, le=1, description="L2 factor of the dense kernel")
    recipe: RecipeName = Field(
        default="writeup",
        description="writeup: the write-up's staircase and L2; strong: warm-up + cosine, "
        "label smoothing, decoupled weight decay, padded random crops (docs/RECIPES.md); "
        "its values fill the fields the request leaves out",
    )
    warmup_epochs: int = Field(
        default=0, ge=0, le=10_000, description="epochs of linear learning-rate warm-up"
    )
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    weight_decay: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="decoupled weight decay of every kernel (not biases or batch norm): "
        "each step shrinks a kernel by learning_rate * weight_decay",
    )
    resume_from: str | None = Field(default=None, pattern=NAME_PATTERN)
    initial_epoch: int | None = Field(default=None, ge=0, le=10_000)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        # The values a preset or a named recipe fills in count as the request's own
        # (``model_fields_set``): a resumed job inherits only what neither names.
        if not isinstance(data, dict):
            return data
        name = data.get("preset")
        if isinstance(name, str) and name in PRESETS:
            data = {**PRESETS[name], **data}
        recipe = data.get("recipe")
        if isinstance(recipe, str) and recipe in RECIPES:
            data = {**RECIPES[recipe], **data}
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

    @property
    def crop_padding(self) -> int:
        """Pixels of padding the network's random crops take from (0: no crops)."""
        return STRONG_CROP_PADDING if self.recipe == "strong" else 0

    def learning_rate_at(self, epoch: int) -> float:
        """The learning rate of 0-based ``epoch``: a function of the epoch alone, so a
        resumed run continues the schedule exactly.

        Both recipes first warm up linearly over ``warmup_epochs`` (lr0 * (epoch + 1) /
        warmup_epochs; none by default for ``writeup``). Then ``writeup`` is the write-up's
        staircase, lr0 * decay^floor(epoch / lr_decay_epoch), and ``strong`` a cosine from
        lr0 at the end of warm-up towards 0 after the last epoch (``epochs``):
        lr0 * (1 + cos(pi * (epoch - warmup) / (epochs - warmup))) / 2.
        """
        lr0 = self.learning_rate
        if epoch < self.warmup_epochs:
            return lr0 * (epoch + 1) / self.warmup_epochs
        if self.recipe == "writeup":
            return lr0 * self.lr_decay ** (epoch // self.lr_decay_epoch)
        span = max(self.epochs - self.warmup_epochs, 1)
        done = min(epoch - self.warmup_epochs, span)
        return lr0 * 0.5 * (1.0 + math.cos(math.pi * done / span))


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

"""``ArchitectureConfig``: width and depth of a tinyres ResNet, validated without Keras.

The API, ``core.train_config`` and the benches check architectures with it; the network
itself (``model.resnet``) applies the same bounds from ``model.config`` in plain Python, so
``model/`` imports nothing but Keras.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator

from model.config import (
    MAX_BLOCKS_PER_LEVEL,
    MAX_LEVELS,
    MAX_WIDTH,
    MIN_WIDTH,
    WRITEUP_LEVELS,
    WRITEUP_WIDTH,
)


class ArchitectureConfig(BaseModel):
    """Width and depth of a ResNet.

    Attributes:
        width: Feature maps after the tail; doubled by every level's downsample.
            Bottlenecks use ``width // 4`` maps inside, so it must be a multiple of 4.
        levels: Number of bottleneck blocks in each level. Every level ends with a
            downsample that halves the resolution, so 64x64 inputs allow at most
            6 levels (32x32 after the tail, 1x1 after six halvings).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    width: int = WRITEUP_WIDTH
    levels: list[int] = list(WRITEUP_LEVELS)

    @field_validator("width")
    @classmethod
    def _check_width(cls, width: int) -> int:
        if not MIN_WIDTH <= width <= MAX_WIDTH or width % 4 != 0:
            raise ValueError(
                f"width must be a multiple of 4 between {MIN_WIDTH} and {MAX_WIDTH}. "
                f"Received: width={width}"
            )
        return width

    @field_validator("levels")
    @classmethod
    def _check_levels(cls, levels: list[int]) -> list[int]:
        if not 1 <= len(levels) <= MAX_LEVELS:
            raise ValueError(
                f"levels must have 1 to {MAX_LEVELS} entries. Received: levels={levels}"
            )
        if any(not 0 <= count <= MAX_BLOCKS_PER_LEVEL for count in levels):
            raise ValueError(
                f"each entry of levels must be between 0 and {MAX_BLOCKS_PER_LEVEL}. "
                f"Received: levels={levels}"
            )
        return levels

"""Architecture settings for the tinyres ResNet, free of TensorFlow imports.

The REST API validates user-supplied architectures with these models without
paying for a TensorFlow import, so nothing here may import ``tensorflow`` or
``keras``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator

IMAGE_SIZE = 64
"""Height and width, in pixels, of the images the networks are built for."""

INPUT_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 3)
"""Shape of one input image, channels last."""

# The write-up's network: CIFAR's levels [4, 6, 3] plus a fourth level of 2, width 64.
# The named presets (``writeup``, ``half``) live in ``core.train_config``.
WRITEUP_WIDTH = 64
WRITEUP_LEVELS = (4, 6, 3, 2)

MIN_WIDTH = 4
MAX_WIDTH = 512
MAX_LEVELS = 6
MAX_BLOCKS_PER_LEVEL = 64


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

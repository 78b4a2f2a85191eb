"""Constants of the tinyres ResNet: input shape, the write-up's network and the bounds.

Plain Python: the API and ``core.architecture.ArchitectureConfig`` read these without
importing Keras or TensorFlow.
"""

from __future__ import annotations

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

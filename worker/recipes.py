"""A train job's recipe: how its network is compiled and its learning rate scheduled.

``training`` calls these; what they build follows only from the job's ``TrainConfig`` and
the machine's ``Settings`` (XLA), so a resumed job compiles exactly as its origin did.
"""

from __future__ import annotations

import keras

from core.config import Settings
from core.train_config import TrainConfig
from worker.devices import use_xla


def compile_model(model: keras.Model, config: TrainConfig, settings: Settings) -> None:
    """Optimizer, loss and metrics of the recipe, compiled for this machine."""
    model.compile(
        optimizer=keras.optimizers.SGD(
            learning_rate=config.learning_rate, momentum=config.momentum
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=use_xla(settings),
    )


def schedule_callback(config: TrainConfig) -> keras.callbacks.Callback:
    """Sets each epoch's learning rate from the epoch alone, so resume continues it."""
    return keras.callbacks.LearningRateScheduler(lambda epoch, _lr: config.learning_rate_at(epoch))

"""A train job's recipe: how its network is built and compiled and its learning rate scheduled.

``training`` calls these; what they build follows only from the job's ``TrainConfig`` and
the machine's ``Settings`` (XLA), so a resumed job compiles exactly as its origin did.
Two recipes (``TrainConfig.recipe``; sources in ``docs/RECIPES.md``):

* ``writeup``: SGD with momentum, plain sparse cross-entropy on logits, L2 on the dense
  kernel, the staircase schedule. Exactly the write-up's.
* ``strong``: the same SGD with decoupled weight decay on every kernel
  (``KernelDecaySGD``), label-smoothed cross-entropy (``SmoothedSparseCrossentropy``),
  warm-up then cosine, and a random-crop layer inside the network.

Both custom classes are registered serializable: a checkpoint (a whole ``.keras`` file)
reloads with its loss and optimizer, so a resumed run continues the recipe exactly.
"""

from __future__ import annotations

from typing import Any

import keras

from core.config import Settings
from core.train_config import TrainConfig
from model.resnet import build_resnet
from worker.devices import use_xla

# Variables that weight decay applies to: convolution and dense kernels, never biases or
# batch norm's gamma and beta ("no bias decay": He et al. 2019, "Bag of Tricks", 3.1).
DECAYED_VARIABLES = ("kernel", "depthwise_kernel", "pointwise_kernel")


@keras.saving.register_keras_serializable(package="tinyres")
class KernelDecaySGD(keras.optimizers.SGD):
    """SGD whose decoupled weight decay (Keras 3's ``weight_decay``: each step
    ``w -= lr * weight_decay * w``, outside the gradient and momentum) applies to kernels only.

    Why a subclass and not ``exclude_from_weight_decay``: those exclusions are not part of
    the optimizer's config, so an optimizer reloaded from a checkpoint would decay biases
    and batch-norm parameters too. The rule here is by variable name, so it survives.
    """

    def _use_weight_decay(self, variable: Any) -> bool:
        # A Keras variable's name is "kernel"; the TensorFlow backend asks about the
        # tf.Variable beneath it, named by its whole path: "resnet/tail/conv/kernel:0".
        name = str(variable.name).rsplit("/", 1)[-1].split(":", 1)[0]
        return name in DECAYED_VARIABLES


@keras.saving.register_keras_serializable(package="tinyres")
class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Cross-entropy on logits against integer labels, with label smoothing: the target
    puts ``1 - smoothing + smoothing / classes`` on the label and ``smoothing / classes`` on
    every other class (Szegedy et al. 2016).

    Keras 3's ``SparseCategoricalCrossentropy`` has no ``label_smoothing``; this is the
    same as ``CategoricalCrossentropy(from_logits=True, label_smoothing=...)`` on one-hot
    labels, without building them.
    """

    def __init__(self, label_smoothing: float = 0.1, name: str = "smoothed_crossentropy", **kw):
        super().__init__(name=name, **kw)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        ops = keras.ops
        logits = ops.cast(y_pred, "float32")
        log_probs = ops.log_softmax(logits, axis=-1)
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        picked = ops.take_along_axis(log_probs, ops.expand_dims(labels, -1), axis=-1)[:, 0]
        mean_all = ops.mean(log_probs, axis=-1)
        s = self.label_smoothing
        return -((1.0 - s) * picked + s * mean_all)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def build_model(config: TrainConfig, classes: list[dict[str, Any]]) -> keras.Model:
    """The recipe's network for ``classes``: the strong recipe's crops its inputs at random
    (``TrainConfig.crop_padding``; a layer inside the network, active in training only)."""
    return build_resnet(
        len(classes),
        config.architecture,
        l2=config.l2,
        class_names=classes,
        crop_padding=config.crop_padding,
    )


def make_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    """The write-up's SGD with momentum; with ``weight_decay``, decayed kernels."""
    if config.weight_decay > 0:
        return KernelDecaySGD(
            learning_rate=config.learning_rate,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
    return keras.optimizers.SGD(learning_rate=config.learning_rate, momentum=config.momentum)


def make_loss(config: TrainConfig) -> keras.losses.Loss:
    """Sparse cross-entropy on logits; label-smoothed when ``label_smoothing`` > 0."""
    if config.label_smoothing > 0:
        return SmoothedSparseCrossentropy(label_smoothing=config.label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def compile_model(model: keras.Model, config: TrainConfig, settings: Settings) -> None:
    """Optimizer, loss and metrics of the recipe, compiled for this machine."""
    model.compile(
        optimizer=make_optimizer(config),
        loss=make_loss(config),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=use_xla(settings),
        steps_per_execution=settings.steps_per_execution,
    )


def schedule_callback(config: TrainConfig) -> keras.callbacks.Callback:
    """Sets each epoch's learning rate from the epoch alone, so resume continues it."""
    return keras.callbacks.LearningRateScheduler(lambda epoch, _lr: config.learning_rate_at(epoch))

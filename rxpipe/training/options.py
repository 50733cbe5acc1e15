"""Training options, validated at construction (so a pipeline fails before it starts)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from rxpipe.errors import ConfigError


def _strings(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _objects(value: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(value)


def _positive(name: str) -> Any:
    def check(_: Any, __: Any, value: Any) -> None:
        if value is not None and value < 1:
            raise ConfigError(f"{name}: expected an int >= 1. Received: {value!r}")

    return check


@attrs.frozen
class TrainOptions:
    """How ``train.fit`` trains.

    Attributes:
        epochs: passes over the training split.
        batch_size: re-batch the training data to this size (``None``: as it arrives).
        optimizer: a Keras optimizer name (``"adam"``, ``"sgd"``, ...).
        learning_rate: the optimizer's learning rate.
        loss: a Keras loss name; ``None`` picks sparse categorical cross-entropy for
            classification and mean squared error otherwise.
        metrics: Keras metric names; ``"accuracy"`` means sparse categorical accuracy
            for integer class labels.
        prefetch: batches buffered ahead of the train step.
        validate: evaluate on the validation split after every epoch.
        progress_every_s: the least time between two ``TrainProgress`` events.
        callbacks: ``keras.callbacks.Callback`` objects (Python only).
    """

    epochs: int = attrs.field(default=10, validator=_positive("epochs"))
    batch_size: int | None = attrs.field(default=None, validator=_positive("batch_size"))
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    loss: str | None = None
    metrics: tuple[str, ...] = attrs.field(default=("accuracy",), converter=_strings)
    prefetch: int = attrs.field(default=4, validator=_positive("prefetch"))
    validate: bool = True
    progress_every_s: float = 0.25
    callbacks: tuple[Any, ...] = attrs.field(default=(), converter=_objects)

    def __attrs_post_init__(self) -> None:
        if not self.learning_rate > 0:
            raise ConfigError(
                f"learning_rate: expected a number > 0. Received: {self.learning_rate!r}"
            )

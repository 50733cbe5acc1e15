"""train.fit: train a planned Keras model on the stream's train split."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rxpipe.flow import map_batches
from rxpipe.model import ModelPlan, TrainedModel
from rxpipe.registry import plugin
from rxpipe.stage import Operator
from rxpipe.training import TrainOptions, train


@plugin("train.fit")
def fit(
    epochs: int = 10,
    batch_size: int | None = None,
    optimizer: str = "adam",
    learning_rate: float = 1e-3,
    loss: str | None = None,
    metrics: Sequence[str] = ("accuracy",),
    prefetch: int = 4,
    validate: bool = True,
    callbacks: Sequence[Any] = (),
) -> Operator[ModelPlan, TrainedModel]:
    """Train the planned model with compiled steps, validating after every epoch.

    Publishes ``TrainProgress`` during each epoch and ``EpochEnded`` with Keras-style logs
    (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``) after it. Keras callbacks
    receive the same logs; a callback that sets ``model.stop_training`` (e.g.
    ``keras.callbacks.EarlyStopping``) ends training after that epoch.

    Args:
        epochs: passes over the training split.
        batch_size: re-batch training and validation data to this size (default: as it
            arrives from the previous stages).
        optimizer: Keras optimizer name.
        learning_rate: the optimizer's learning rate.
        loss: Keras loss name (default: sparse categorical cross-entropy for
            classification, mean squared error otherwise).
        metrics: Keras metric names reported per epoch.
        prefetch: batches prepared ahead of the train step (the bounded buffer).
        validate: evaluate on the validation split after every epoch.
        callbacks: ``keras.callbacks.Callback`` objects (Python only).

    Example:
        >>> stage = fit(epochs=3, learning_rate=0.01)
        >>> stage.params["epochs"], stage.name
        (3, 'train.fit')
    """
    options = TrainOptions(
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer,
        learning_rate=learning_rate,
        loss=loss,
        metrics=tuple(metrics),
        prefetch=prefetch,
        validate=validate,
        callbacks=tuple(callbacks),
    )
    return map_batches("train.fit", lambda plan: train(plan, options))

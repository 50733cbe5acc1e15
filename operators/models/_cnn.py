"""models.cnn: a small convolutional classifier sized from the data's metadata."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import reactivex

from rxpipe.batch import Batch, DatasetMetadata
from rxpipe.errors import BatchError, ConfigError
from rxpipe.model import ModelPlan
from rxpipe.registry import plugin
from rxpipe.stage import Operator

if TYPE_CHECKING:
    import keras


def build_cnn(
    meta: DatasetMetadata, filters: Sequence[int], dense: int, dropout: float
) -> keras.Model:
    """Conv blocks (3×3 conv + ReLU, 2×2 max-pool while the map is larger than 2×2),
    then dense + dropout + softmax over the data set's classes."""
    import keras

    spec = meta.feature_spec
    if len(spec.shape) not in (2, 3):
        raise BatchError(
            f"models.cnn: expected image samples of shape (height, width[, channels]). "
            f"Received: shape {spec.shape}"
        )
    if meta.num_classes is None or meta.num_classes < 2:
        raise BatchError(
            "models.cnn: expected a classification data set with at least 2 label names. "
            f"Received: label_names={meta.label_names!r}"
        )
    inputs = keras.Input(spec.shape, name="features")
    x = inputs if len(spec.shape) == 3 else keras.layers.Reshape((*spec.shape, 1))(inputs)
    size = min(spec.shape[:2])
    for count in filters:
        x = keras.layers.Conv2D(count, 3, padding="same", activation="relu")(x)
        if size > 2:
            x = keras.layers.MaxPooling2D(2)(x)
            size //= 2
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(dense, activation="relu")(x)
    if dropout:
        x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(meta.num_classes, activation="softmax", name="scores")(x)
    return keras.Model(inputs, outputs, name="cnn")


@plugin("models.cnn")
def cnn(
    filters: Sequence[int] = (32, 64), dense: int = 128, dropout: float = 0.25
) -> Operator[Batch, ModelPlan]:
    """A small convnet for image classification: input shape and classes from the data.

    Args:
        filters: output channels of each 3×3 conv block.
        dense: units of the hidden dense layer.
        dropout: dropout rate before the output layer (0 disables it).

    Example:
        >>> from rxpipe.testing import collect
        >>> from rxpipe.operators import collect as sources
        >>> [plan] = collect(reactivex.empty().pipe(sources.digits(), cnn()))
        >>> plan.name
        'cnn'
    """
    filters = tuple(filters)
    if not filters or any(f < 1 for f in filters):
        raise ConfigError(
            f"filters: expected a non-empty list of ints >= 1. Received: {list(filters)}"
        )
    if dense < 1:
        raise ConfigError(f"dense: expected an int >= 1. Received: {dense!r}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout: expected a rate in [0, 1). Received: {dropout!r}")

    def operator(source: reactivex.Observable[Batch]) -> reactivex.Observable[ModelPlan]:
        return reactivex.just(
            ModelPlan("cnn", source, lambda meta: build_cnn(meta, filters, dense, dropout))
        )

    return operator

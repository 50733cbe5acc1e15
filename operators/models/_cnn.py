"""models.cnn: a small convolutional network sized from the data's metadata."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rxpipe.batch import Batch, DatasetMetadata
from rxpipe.errors import BatchError, ConfigError
from rxpipe.model import ModelPlan
from rxpipe.registry import plugin
from rxpipe.stage import Operator

from ._heads import add_head, check_head, plan

if TYPE_CHECKING:
    import keras


def cnn_body(
    meta: DatasetMetadata, filters: Sequence[int], dense: int, dropout: float
) -> tuple[Any, Any]:
    """Conv blocks (3×3 conv + ReLU, 2×2 max-pool while the map is larger than 2×2),
    then dense + dropout."""
    import keras

    spec = meta.feature_spec
    if len(spec.shape) not in (2, 3):
        raise BatchError(
            f"models.cnn: expected image samples of shape (height, width[, channels]). "
            f"Received: shape {spec.shape}"
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
    return inputs, x


def build_cnn(
    meta: DatasetMetadata, filters: Sequence[int], dense: int, dropout: float
) -> keras.Model:
    """The CNN classifier for ``meta`` (softmax over its classes)."""
    import keras

    inputs, x = cnn_body(meta, filters, dense, dropout)

    def no_stats() -> Any:
        raise AssertionError("a classification head needs no label statistics")

    outputs = add_head(x, meta, "classification", "models.cnn", no_stats)
    return keras.Model(inputs, outputs, name="cnn")


@plugin("models.cnn")
def cnn(
    filters: Sequence[int] = (32, 64),
    dense: int = 128,
    dropout: float = 0.25,
    head: str = "auto",
) -> Operator[Batch, ModelPlan]:
    """A small convnet for image classification: input shape and classes from the data.

    Args:
        filters: output channels of each 3×3 conv block.
        dense: units of the hidden dense layer.
        dropout: dropout rate before the output layer (0 disables it).
        head: ``"auto"`` (softmax over the classes when the data has label names, else
            regression), ``"classification"`` or ``"regression"``.

    Example:
        >>> import reactivex
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
    check_head("models.cnn", head)
    return plan("cnn", head, lambda meta: cnn_body(meta, filters, dense, dropout))

"""models.mlp: a multilayer perceptron for tabular data (or any flattened features)."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

from rxpipe.batch import Batch, DatasetMetadata
from rxpipe.errors import ConfigError
from rxpipe.model import ModelPlan
from rxpipe.registry import plugin
from rxpipe.stage import Operator

from .._checks import fraction
from ._heads import check_head, plan


def check_activation(plugin_name: str, activation: str) -> str:
    """``activation`` if Keras knows it by that name (imports Keras).

    Example:
        >>> check_activation("models.mlp", "rellu")
        Traceback (most recent call last):
        ...
        rxpipe.errors.ConfigError: models.mlp.activation: expected a Keras activation ...
        Received: 'rellu' (did you mean 'relu'?)
    """
    if isinstance(activation, str) and activation:
        import keras

        try:
            keras.activations.get(activation)
        except ValueError:
            pass
        else:
            return activation
    from keras.src.activations import ALL_OBJECTS_DICT

    names = sorted(ALL_OBJECTS_DICT)
    text = activation.lower() if isinstance(activation, str) else ""
    close = difflib.get_close_matches(text, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (one of {', '.join(names)})"
    raise ConfigError(
        f"expected a Keras activation name such as 'relu'. Received: {activation!r}{hint}",
        f"{plugin_name}.activation",
    )


def mlp_body(
    meta: DatasetMetadata, hidden: tuple[int, ...], dropout: float, activation: str
) -> tuple[Any, Any]:
    """Input → (flatten) → dense layers with dropout."""
    import keras

    spec = meta.feature_spec
    inputs = keras.Input(spec.shape, name="features")
    x = inputs
    if len(spec.shape) == 0:
        x = keras.layers.Reshape((1,))(x)
    elif len(spec.shape) > 1:
        x = keras.layers.Flatten()(x)
    for units in hidden:
        x = keras.layers.Dense(units, activation=activation)(x)
        if dropout:
            x = keras.layers.Dropout(dropout)(x)
    return inputs, x


@plugin("models.mlp")
def mlp(
    hidden: Sequence[int] = (64, 32),
    dropout: float = 0.1,
    activation: str = "relu",
    head: str = "auto",
) -> Operator[Batch, ModelPlan]:
    """Dense layers on the flattened features; a softmax or regression head.

    For tables (after ``process.standardize`` and, for named columns,
    ``process.concat_columns``) and bag-of-words text (``process.vectorize`` with
    ``output="multi_hot"``). ``head="auto"`` classifies when the data has label names
    and regresses otherwise (the output is scaled to the training labels).

    Args:
        hidden: units of each hidden layer (may be empty: a linear model).
        dropout: dropout rate after each hidden layer.
        activation: Keras activation of the hidden layers.
        head: ``"auto"``, ``"classification"`` or ``"regression"``.

    Example:
        >>> import reactivex
        >>> from rxpipe.testing import collect
        >>> from rxpipe.operators import collect as sources
        >>> [p] = collect(reactivex.empty().pipe(sources.wine(), mlp(hidden=[16])))
        >>> p.name
        'mlp'
    """
    units = tuple(hidden)
    if any(isinstance(u, bool) or not isinstance(u, int) or u < 1 for u in units):
        raise ConfigError(
            f"expected a list of ints >= 1. Received: {list(units)}", "models.mlp.hidden"
        )
    fraction("models.mlp", "dropout", dropout, upper_open=True)
    check_head("models.mlp", head)
    check_activation("models.mlp", activation)
    return plan("mlp", head, lambda meta: mlp_body(meta, units, dropout, activation))

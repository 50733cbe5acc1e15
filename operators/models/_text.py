"""models.text_classifier: token embeddings, pooled or convolved, then a head."""

from __future__ import annotations

from typing import Any

from rxpipe.batch import Batch, DatasetMetadata
from rxpipe.errors import BatchError
from rxpipe.model import ModelPlan
from rxpipe.registry import plugin
from rxpipe.stage import Operator

from .._checks import fraction, one_of, positive_int
from ..process._text_steps import PAD
from ._heads import check_head, plan

ARCHITECTURES = ("pooling", "conv")


def masked_mean(ids: Any, embedded: Any) -> Any:
    """The mean of the embeddings of the tokens that are not padding (id 0).

    A text without tokens (empty, only spaces or punctuation) has the mean 0, not 0 / 0:
    ``GlobalAveragePooling1D`` over ``Embedding(mask_zero=True)`` gives NaN there, which
    stops training and makes the served answer depend on how ``relu`` treats NaN. Built
    from ``keras.ops``, so a ``.keras`` file of the model loads without rxpipe.

    Example:
        >>> import numpy as np
        >>> ids = np.array([[2, 3, 0], [0, 0, 0]])
        >>> vectors = np.array([[[1.0], [3.0], [9.0]], [[9.0], [9.0], [9.0]]], "float32")
        >>> np.asarray(masked_mean(ids, vectors)).tolist()
        [[2.0], [0.0]]
    """
    from keras import ops

    mask = ops.expand_dims(ops.cast(ops.not_equal(ids, PAD), embedded.dtype), -1)
    total = ops.sum(embedded * mask, axis=1)
    return total / ops.maximum(ops.sum(mask, axis=1), ops.cast(1, embedded.dtype))


def text_body(
    meta: DatasetMetadata,
    embedding_dim: int,
    architecture: str,
    filters: int,
    kernel_size: int,
    dense: int,
    dropout: float,
) -> tuple[Any, Any]:
    """Token ids → embedding → mean pooling (or conv + max pooling) → dense."""
    import keras

    spec = meta.feature_spec
    if len(spec.shape) != 1 or not spec.dtype.startswith("int") or spec.value_range is None:
        raise BatchError(
            "models.text_classifier: expected token-id sequences with a vocabulary size (from "
            f"process.vectorize). Received: samples of shape {spec.shape}, dtype {spec.dtype}, "
            f"value range {spec.value_range}"
        )
    vocabulary = int(spec.value_range[1]) + 1
    inputs = keras.Input(spec.shape, dtype=spec.dtype, name="features")
    if architecture == "pooling":
        x = keras.layers.Embedding(vocabulary, embedding_dim)(inputs)
        x = masked_mean(inputs, x)
    else:
        x = keras.layers.Embedding(vocabulary, embedding_dim)(inputs)
        x = keras.layers.Conv1D(filters, kernel_size, padding="same", activation="relu")(x)
        x = keras.layers.GlobalMaxPooling1D()(x)
    if dropout:
        x = keras.layers.Dropout(dropout)(x)
    x = keras.layers.Dense(dense, activation="relu")(x)
    return inputs, x


@plugin("models.text_classifier")
def text_classifier(
    embedding_dim: int = 64,
    architecture: str = "pooling",
    filters: int = 64,
    kernel_size: int = 5,
    dense: int = 64,
    dropout: float = 0.2,
    head: str = "auto",
) -> Operator[Batch, ModelPlan]:
    """Embed token ids (from ``process.vectorize``), pool or convolve, classify.

    ``"pooling"`` averages the embeddings of the tokens (padding ignored): fast, and a
    strong baseline (fastText-like). ``"conv"`` runs a 1-D convolution and keeps each
    filter's maximum, which sees short phrases.

    Args:
        embedding_dim: size of each token's embedding.
        architecture: ``"pooling"`` or ``"conv"``.
        filters: convolution filters (``"conv"``).
        kernel_size: convolution width in tokens (``"conv"``).
        dense: units of the hidden dense layer.
        dropout: dropout rate before the dense layer.
        head: ``"auto"``, ``"classification"`` or ``"regression"``.

    Example:
        >>> text_classifier(architecture="conv").params["architecture"]
        'conv'
    """
    positive_int("models.text_classifier", "embedding_dim", embedding_dim)
    one_of("models.text_classifier", "architecture", architecture, ARCHITECTURES)
    positive_int("models.text_classifier", "filters", filters)
    positive_int("models.text_classifier", "kernel_size", kernel_size)
    positive_int("models.text_classifier", "dense", dense)
    fraction("models.text_classifier", "dropout", dropout, upper_open=True)
    check_head("models.text_classifier", head)
    return plan(
        "text_classifier",
        head,
        lambda meta: text_body(
            meta, embedding_dim, architecture, filters, kernel_size, dense, dropout
        ),
    )

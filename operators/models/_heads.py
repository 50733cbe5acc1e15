"""Output heads shared by the model plugins: classification (softmax) or regression.

A regression head is a linear layer whose output is rescaled by the training labels'
standard deviation and shifted by their mean, so the network learns unit-scale targets
whatever the labels' units (the diabetes targets run from 25 to 346). The scale comes
from up to :data:`STATS_SAMPLES` training labels, read when the model is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import reactivex
from reactivex import operators as ops

from rxpipe.batch import Batch, DatasetMetadata
from rxpipe.errors import BatchError
from rxpipe.flow.fitting import FIT_SPLITS
from rxpipe.model import ModelPlan
from rxpipe.stage import Operator

from .._checks import one_of

if TYPE_CHECKING:
    import keras

HEADS = ("auto", "classification", "regression")
OUTPUT_LAYER = "scores"
"""The name of the output layer of every rxpipe head (see :func:`add_head`)."""
REGRESSION_UNIT_LAYER = "unit_scores"
"""The linear layer under a regression head's ``scores`` rescaling."""
STATS_SAMPLES = 10_000
"""How many training labels a regression head reads for its output scale."""


@attrs.frozen
class LabelStats:
    """Mean and standard deviation of each regression target."""

    mean: tuple[float, ...]
    std: tuple[float, ...]


def check_head(plugin: str, head: str) -> str:
    """``head`` if it is ``"auto"``, ``"classification"`` or ``"regression"``."""
    return one_of(plugin, "head", head, HEADS)


def task(meta: DatasetMetadata, head: str, plugin: str) -> str:
    """``"classification"`` or ``"regression"`` for ``meta`` (``head="auto"``: by label names)."""
    if head == "auto":
        if meta.label_names is None:
            return "regression"
        head = "classification"  # and it needs 2 classes or more
    if head == "classification" and (meta.num_classes is None or meta.num_classes < 2):
        raise BatchError(
            f"{plugin}: expected a classification data set with at least 2 label names. "
            f"Received: label_names={meta.label_names!r} (use head='regression', or "
            "process.label_encode)"
        )
    return head


def label_stats(data: reactivex.Observable[Batch], limit: int = STATS_SAMPLES) -> LabelStats:
    """Mean and std of up to ``limit`` training labels of ``data`` (read on a thread)."""
    from rxpipe.flow import iterate

    from ..process._standardize import Moments

    def training(batch: Batch) -> bool:
        return batch.split in FIT_SPLITS

    moments = Moments()
    seen = 0
    for batch in iterate(data.pipe(ops.filter(training)), 2, name="rxpipe-label-stats"):
        if batch.labels is None or batch.labels.dtype == object:
            raise BatchError(
                "regression head: expected numeric labels. Received: "
                f"{'no labels' if batch.labels is None else 'text labels'} "
                f"(samples {batch.ids[:4].tolist()}...)"
            )
        moments.add(batch.labels.reshape(batch.size, -1))
        seen += batch.size
        if seen >= limit:
            break
    if not seen:
        raise BatchError(
            "regression head: expected training samples to scale the output. Received: none"
        )
    return LabelStats(
        tuple(np.atleast_1d(moments.mean).tolist()), tuple(np.atleast_1d(moments.std()).tolist())
    )


def add_head(
    x: Any,
    meta: DatasetMetadata,
    head: str,
    plugin: str,
    stats: Callable[[], LabelStats],
) -> Any:
    """The output layer on top of ``x``: softmax over the classes, or scaled regression."""
    import keras

    if task(meta, head, plugin) == "classification":
        assert meta.num_classes is not None
        return keras.layers.Dense(meta.num_classes, activation="softmax", name=OUTPUT_LAYER)(x)
    scale = stats()
    x = keras.layers.Dense(len(scale.mean), name=REGRESSION_UNIT_LAYER)(x)
    rescale = keras.layers.Rescaling(
        scale=list(scale.std), offset=list(scale.mean), name=OUTPUT_LAYER
    )
    return rescale(x)


def plan(
    name: str,
    head: str,
    body: Callable[[DatasetMetadata], tuple[Any, Any]],
) -> Operator[Batch, ModelPlan]:
    """A model plugin's operator: the stream becomes one :class:`ModelPlan`.

    Args:
        name: the model's name (``"mlp"``, ...).
        head: ``"auto"``, ``"classification"`` or ``"regression"``.
        body: builds ``(inputs, features)`` from the data's metadata; the head goes on top.
    """

    def operator(source: reactivex.Observable[Batch]) -> reactivex.Observable[ModelPlan]:
        def build(meta: DatasetMetadata) -> keras.Model:
            import keras

            inputs, x = body(meta)
            outputs = add_head(x, meta, head, f"models.{name}", lambda: label_stats(source))
            return keras.Model(inputs, outputs, name=name)

        return reactivex.just(ModelPlan(name, source, build))

    return operator

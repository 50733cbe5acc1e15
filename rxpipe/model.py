"""What flows after the data stages: a model plan, then a trained model.

At the model stage the stream changes type. ``models.*`` plugins turn the stream of
batches into one :class:`ModelPlan`: the cold batch stream itself plus a factory that
builds a Keras model from the data set's metadata. ``train.*`` turns the plan into a
:class:`TrainedModel`; ``evaluate.*`` and ``deploy.*`` return it with metrics and
artifacts added. Why carry the stream instead of its batches:

- the trainer subscribes to the data once per epoch (and once more for validation),
  so a cold source re-reads, or ``access.cache`` replays, without holding it all;
- the model is built by the trainer, inside a ``tf.distribute`` strategy scope when
  one is used, and from the metadata of the first batch it sees;
- evaluation reads the test split after training from the same stream.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import reactivex

from rxpipe.batch import Batch, DatasetMetadata

if TYPE_CHECKING:
    import keras

__all__ = ["ModelFactory", "ModelPlan", "TrainedModel"]

ModelFactory = Callable[[DatasetMetadata], "keras.Model"]
"""Builds a Keras model for a data set (input shape and classes from its metadata)."""


@attrs.frozen
class ModelPlan:
    """A model to train on a data stream.

    Attributes:
        name: the model's name (e.g. ``"cnn"``).
        data: the cold stream of batches of every split.
        build: builds the (uncompiled) Keras model from the data's metadata.
    """

    name: str
    data: reactivex.Observable[Batch] = attrs.field(repr=False)
    build: ModelFactory = attrs.field(repr=False)


@attrs.frozen
class TrainedModel:
    """A trained model with the data it was trained on and what was learned about it.

    Attributes:
        name: the model's name.
        model: the trained Keras model.
        data: the cold stream of batches of every split (evaluation reads the test split).
        metadata: the training data's metadata, including its preprocessing.
        history: Keras-style logs of each epoch.
        metrics: evaluation results by split.
        artifacts: saved artifacts, name → path.
        stats: facts about training (e.g. ``traces``: how often each step was traced).
    """

    name: str
    model: keras.Model = attrs.field(repr=False)
    data: reactivex.Observable[Batch] = attrs.field(repr=False)
    metadata: DatasetMetadata
    history: tuple[Mapping[str, float], ...] = ()
    metrics: Mapping[str, Any] = attrs.field(factory=dict)
    artifacts: Mapping[str, str] = attrs.field(factory=dict)
    stats: Mapping[str, Any] = attrs.field(factory=dict)

    def evolve(self, **changes: Any) -> TrainedModel:
        """Return a copy with ``changes`` applied."""
        return attrs.evolve(self, **changes)

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

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import reactivex

from rxpipe.batch import Batch, DatasetMetadata

if TYPE_CHECKING:
    import keras

__all__ = [
    "TASKS",
    "ModelFactory",
    "ModelPlan",
    "TrainedModel",
    "is_binary",
    "model_task",
    "predicts_values",
]

TASKS = ("classification", "regression")
"""What a trained model does: score classes, or predict values."""

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


def _output_width(model: Any) -> int | None:
    try:
        shape = model.output_shape
    except (AttributeError, ValueError, RuntimeError):
        return None
    if not isinstance(shape, tuple) or not shape:
        return None  # several outputs, or none known
    width = shape[-1]
    return width if isinstance(width, int) else None


def _ends_in_rescaling(model: Any) -> bool:
    import keras

    layers = list(getattr(model, "layers", None) or ())
    return bool(layers) and isinstance(layers[-1], keras.layers.Rescaling)


def model_task(model: Any, label_names: Sequence[str] | None) -> str:
    """``"classification"`` if ``model`` gives one score per label name, else ``"regression"``.

    A data set without label names is a regression. With label names, a model of one
    output for two classes is a binary classifier (see :func:`is_binary`); another model
    whose output is not one value per class (a regression head on class indices) is a
    regressor too, and so is a model ending in a ``Rescaling`` layer, as the regression
    head of the ``models.*`` plugins does (:mod:`rxpipe.operators.models._heads`), even
    when its width happens to equal the number of classes (one-hot targets). A model
    whose output width cannot be read is taken as a classifier of the label names.

    Example:
        >>> import keras
        >>> scores = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> model_task(scores, ("a", "b", "c")), model_task(scores, ("yes", "no"))
        ('classification', 'regression')
        >>> model_task(keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)]), ("n", "y"))
        'classification'
    """
    if label_names is None or _ends_in_rescaling(model):
        return "regression"
    width = _output_width(model)
    known = width is None or width == len(label_names)
    return "classification" if known or is_binary(model, label_names) else "regression"


def is_binary(model: Any, label_names: Sequence[str] | None) -> bool:
    """Whether ``model`` is a binary classifier of one output (the second class's
    probability after a sigmoid, or its logit) for a data set of two label names.

    Example:
        >>> import keras
        >>> one = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, "sigmoid")])
        >>> is_binary(one, ("no", "yes")), is_binary(one, ("a", "b", "c"))
        (True, False)
    """
    return (
        label_names is not None
        and len(label_names) == 2
        and _output_width(model) == 1
        and not _ends_in_rescaling(model)
    )


def predicts_values(model: Any, label_names: Sequence[str] | None) -> bool:
    """Whether ``model`` was made a regressor of data that has label names (class indices
    as numbers): it ends in a ``Rescaling`` layer, as the ``models.*`` plugins'
    ``head="regression"`` does. Any other model of such data is taken as a classifier
    (one of the wrong width is reported by training, not guessed to be a regressor).

    Example:
        >>> import keras
        >>> value = keras.Sequential(
        ...     [keras.Input((4,)), keras.layers.Dense(1), keras.layers.Rescaling(2.0)]
        ... )
        >>> predicts_values(value, ("a", "b", "c")), predicts_values(value, None)
        (True, False)
    """
    return label_names is not None and _ends_in_rescaling(model)


def _task_of(trained: TrainedModel) -> str:
    return model_task(trained.model, trained.metadata.label_names)


def _task_needs_labels(trained: TrainedModel, attribute: Any, task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"TrainedModel.task: expected one of {TASKS}. Received: {task!r}")
    if task == "classification" and trained.metadata.label_names is None:
        raise ValueError(
            "TrainedModel.task: expected label names in the metadata of a classifier. "
            "Received: task 'classification' with label_names None"
        )


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
        task: ``"classification"`` or ``"regression"``: what the model's head does;
            by default decided from the model and the label names by :func:`model_task`
            (a regression head on a data set with label names is a regression).
        logits: a classifier's outputs are logits (it was trained with a loss with
            ``from_logits=True``); an export serves their softmax as its scores.
    """

    name: str
    model: keras.Model = attrs.field(repr=False)
    data: reactivex.Observable[Batch] = attrs.field(repr=False)
    metadata: DatasetMetadata
    history: tuple[Mapping[str, float], ...] = ()
    metrics: Mapping[str, Any] = attrs.field(factory=dict)
    artifacts: Mapping[str, str] = attrs.field(factory=dict)
    stats: Mapping[str, Any] = attrs.field(factory=dict)
    task: str = attrs.field(
        default=attrs.Factory(_task_of, takes_self=True), validator=_task_needs_labels
    )
    logits: bool = False

    def evolve(self, **changes: Any) -> TrainedModel:
        """Return a copy with ``changes`` applied."""
        return attrs.evolve(self, **changes)

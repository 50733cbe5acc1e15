"""models.keras: train a Keras model of your own, built in Python.

The model is given as a ``keras.Model`` object, as a function that builds one (from the
data's :class:`~rxpipe.DatasetMetadata`, or from nothing), or in a pipeline file as the
import path of either (``"package.module:name"``). It is trained as it is: no head is
added, so its output must fit the labels and ``train.fit``'s loss (both are checked when
training starts).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import reactivex

from rxpipe.batch import Batch, DatasetMetadata
from rxpipe.errors import ConfigError
from rxpipe.imports import import_object, is_import_path
from rxpipe.model import ModelPlan
from rxpipe.registry import plugin
from rxpipe.stage import Operator

from ._load import check_input

FIELD = "models.keras.model"
EXPECTED = (
    "expected a keras.Model, a function that builds one, or the import path of either, "
    "'package.module:name'"
)


def _resolve(path: str) -> Any:
    if is_import_path(path):
        return import_object(path, FIELD)
    hint = ""
    if path.startswith("<"):  # a Python object's repr, as a run's pipeline.toml records it
        hint = (
            " (an object defined in a script is written to a run's pipeline.toml as its "
            "repr: resume that run from Python, with Pipeline.run(resume_from=RUN_DIR), or "
            "define it in an importable module)"
        )
    raise ConfigError(f"{EXPECTED}. Received: {path!r}{hint}", FIELD)


def _takes_metadata(function: Callable[..., Any], shown: str) -> bool:
    """Whether ``function`` is called with the data's metadata (else with nothing)."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return True  # a builtin or C callable: give it the metadata
    # a keras.Model class is made without arguments when it can be (its defaults, e.g.
    # units=32, are no place for the metadata)
    for arguments in ((), (None,)) if inspect.isclass(function) else ((None,), ()):
        try:
            signature.bind(*arguments)
        except TypeError:
            continue
        return bool(arguments)
    raise ConfigError(
        "expected a function of the data's DatasetMetadata (one argument) or of no "
        f"arguments, returning a keras.Model. Received: {shown}, a function of {signature}",
        FIELD,
    )


def _count(model: Any, what: str) -> int:
    """How many ``inputs`` or ``outputs`` ``model`` has (1 if not known before a call)."""
    try:
        return len(getattr(model, what) or [None])
    except (AttributeError, ValueError, TypeError):
        return 1


@plugin("models.keras")
def keras(model: str | Callable[..., Any]) -> Operator[Batch, ModelPlan]:
    """Train your own Keras model (Pipcook's modelDefine, in Python).

    ``train.fit`` trains it as it is: no head is added, so it must take one input (the
    features) and give one output of what the labels and the loss need (for a data set
    with label names, one score per class: probabilities after a softmax, or logits with
    a loss with ``from_logits=True``; for two classes also one output, a sigmoid or a
    logit, trained with binary cross-entropy by default; a regressor of class indices ends
    in a ``keras.layers.Rescaling`` layer). Its input must take the
    samples as the stream carries them (checked when training starts, as the loss is). A
    model that is not built yet (a subclassed model) is built by calling it on one sample
    of zeros.

    A ``keras.Model`` class is made without arguments when it can be (else with the
    metadata). A ``keras.Model`` object trains in place: running the pipeline again goes on
    from the weights the last run left, as ``model.fit`` does. A function builds a new
    model for every run (a resumed run builds it again, then restores its checkpoint).
    ``train.fit``'s optimizer, loss and metrics are used; a ``compile()`` on the model is
    not. A model object keeps the dtype policy it was made with: for
    ``train.fit(precision=...)`` or ``strategy=...`` (whose variables must be made in the
    strategy's scope), give a function.

    Args:
        model: a ``keras.Model``; a function that returns one, called when training
            starts with the data's :class:`~rxpipe.DatasetMetadata` (shapes, label
            names) or with no argument; or, in a pipeline file, the import path of
            either, ``"package.module:name"`` (found from the current directory or the
            installed packages, imported when the stage is built).

    Raises:
        ConfigError: for anything else, an import path that does not import, or a
            function that does not return a ``keras.Model``.

    Example:
        >>> import keras
        >>> def small(meta):
        ...     return keras.Sequential([
        ...         keras.Input(meta.feature_spec.shape),
        ...         keras.layers.Flatten(),
        ...         keras.layers.Dense(meta.num_classes, activation="softmax"),
        ...     ])
        >>> from rxpipe.operators import models
        >>> stage = models.keras(small)
        >>> stage.name
        'models.keras'
    """
    import keras as keras_

    if isinstance(model, str):
        shown = repr(model)
        model = _resolve(model)
    else:
        shown = repr(getattr(model, "__qualname__", model))
    if isinstance(model, keras_.Model):
        instance = model

        def make(meta: DatasetMetadata) -> Any:
            import tensorflow as tf

            if tf.distribute.has_strategy():  # train.fit builds the model in its scope
                raise ConfigError(
                    "expected a function that builds the model with train.fit(strategy=...), "
                    "so that its variables are made in the strategy's scope. Received: the "
                    f"keras.Model object {instance.name!r}, made before",
                    FIELD,
                )
            return instance

        name = instance.name
    elif callable(model):
        function = model
        with_metadata = _takes_metadata(function, shown)

        def make(meta: DatasetMetadata) -> Any:
            built = function(meta) if with_metadata else function()
            if not isinstance(built, keras_.Model):
                raise ConfigError(
                    f"expected {shown} to return a keras.Model. Received: {built!r} "
                    f"({type(built).__name__})",
                    FIELD,
                )
            return built

        name = "keras"
    else:
        raise ConfigError(f"{EXPECTED}. Received: {model!r} ({type(model).__name__})", FIELD)

    def build(meta: DatasetMetadata) -> Any:
        built = make(meta)
        inputs, outputs = _count(built, "inputs"), _count(built, "outputs")
        if inputs > 1 or outputs > 1:
            raise ConfigError(
                "expected a model with one input and one output (a batch carries one "
                f"feature array and one label array). Received: {built.name!r}, with "
                f"{inputs} input(s) and {outputs} output(s)",
                FIELD,
            )
        check_input(built, meta, "models.keras", "the model")
        if not built.built:  # a subclassed model: built by a call, as Keras's fit does
            spec = meta.feature_spec
            built(np.zeros((1, *spec.shape), spec.dtype if spec.dtype != "string" else str))
        return built

    def operator(source: reactivex.Observable[Batch]) -> reactivex.Observable[ModelPlan]:
        return reactivex.just(ModelPlan(name, source, build))

    return operator

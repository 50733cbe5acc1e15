"""Training options, validated at construction (so a pipeline fails before it starts)."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

import attrs

from rxpipe.errors import ConfigError

PRECISIONS = ("mixed_float16", "mixed_bfloat16")
STRATEGIES = ("mirrored", "multi_worker")

KerasSpec = str | Mapping[str, Any] | Callable[..., Any]
"""An optimizer, loss or metric: a Keras name (``"adam"``, ``"mse"``), a Keras config
(``{"class_name": "SparseCategoricalCrossentropy", "config": {"from_logits": True}}``, as
``keras.saving.serialize_keras_object`` writes it), or in Python a Keras object
(``keras.optimizers.Optimizer``, ``keras.losses.Loss``, ``keras.metrics.Metric``) or a
loss or metric function ``f(y_true, y_pred)``."""


def _optional_tuple(value: Iterable[Any] | None) -> tuple[Any, ...] | None:
    return None if value is None else tuple(value)


def _objects(value: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(value)


def _positive(name: str) -> Any:
    def check(_: Any, __: Any, value: Any) -> None:
        if value is not None and value < 1:
            raise ConfigError(f"{name}: expected an int >= 1. Received: {value!r}")

    return check


def _one_of(name: str, choices: tuple[str, ...]) -> Any:
    def check(_: Any, __: Any, value: Any) -> None:
        if value is not None and value not in choices:
            raise ConfigError(f"{name}: expected None or one of {choices}. Received: {value!r}")

    return check


@attrs.frozen
class TrainOptions:
    """How ``train.fit`` trains. See :func:`rxpipe.operators.train.fit` for each option."""

    epochs: int = attrs.field(default=10, validator=_positive("epochs"))
    batch_size: int | None = attrs.field(default=None, validator=_positive("batch_size"))
    optimizer: Any = "adam"
    learning_rate: float = 1e-3
    loss: Any = None
    metrics: tuple[Any, ...] | None = attrs.field(default=None, converter=_optional_tuple)
    prefetch: int = attrs.field(default=4, validator=_positive("prefetch"))
    validate: bool = True
    progress_every_s: float = 0.25
    callbacks: tuple[Any, ...] = attrs.field(default=(), converter=_objects)
    patience: int | None = attrs.field(default=None, validator=_positive("patience"))
    monitor: str = "val_loss"
    min_delta: float = 0.0
    restore_best_weights: bool = True
    checkpoint: bool = True
    precision: str | None = attrs.field(default=None, validator=_one_of("precision", PRECISIONS))
    jit_compile: bool = False
    device: str | None = None
    memory_growth: bool = False
    deterministic: bool = False
    strategy: str | None = attrs.field(default=None, validator=_one_of("strategy", STRATEGIES))
    steps_per_epoch: int | None = attrs.field(default=None, validator=_positive("steps_per_epoch"))

    def metrics_for(self, classification: bool) -> tuple[Any, ...]:
        """The metrics to log: ``metrics``, or by default ``("accuracy",)`` for a
        classifier and none for a regression model (where accuracy means nothing).

        Example:
            >>> TrainOptions().metrics_for(classification=False)
            ()
        """
        if self.metrics is not None:
            return self.metrics
        return ("accuracy",) if classification else ()

    def __attrs_post_init__(self) -> None:
        if not self.learning_rate > 0:
            raise ConfigError(
                f"learning_rate: expected a number > 0. Received: {self.learning_rate!r}"
            )
        if self.device is not None and not self.device.upper().lstrip("/").startswith(
            ("CPU", "GPU", "TPU", "DEVICE:")
        ):
            raise ConfigError(
                f"device: expected a TensorFlow device such as '/GPU:0' or '/CPU:0'. "
                f"Received: {self.device!r}"
            )


def _unknown(kind: str, examples: str, name: str, known: Collection[str], path: str) -> ConfigError:
    close = difflib.get_close_matches(name, known, n=3)
    hint = f". Did you mean: {', '.join(map(repr, close))}?" if close else ""
    return ConfigError(
        f"expected a Keras {kind} name such as {examples}. Received: {name!r}{hint}", path
    )


def logged_metric_name(metric: Any) -> str | None:
    """The key a metric's values are logged under (``"mae"``: ``"mean_absolute_error"``).

    As training names it (see :mod:`rxpipe.training.steps`): ``"accuracy"`` and ``"acc"``
    as ``"accuracy"``; a Keras metric class by its default name (``"AUC"``: ``"auc"``,
    never ``"auc_1"``), or by the ``name`` its config gives; a metric object by its
    ``name``; a metric function by the name given (or its ``__name__``). ``None`` for a
    name Keras does not know (nothing is instantiated, so TensorFlow's runtime is not
    started).

    Example:
        >>> logged_metric_name("mae"), logged_metric_name("AUC")
        ('mean_absolute_error', 'auc')
        >>> logged_metric_name({"class_name": "AUC", "config": {"name": "roc_auc"}})
        'roc_auc'
    """
    if isinstance(metric, Mapping):
        config = metric.get("config")
        if isinstance(config, Mapping) and isinstance(config.get("name"), str):
            return str(config["name"])
        metric = metric.get("class_name")
    if not isinstance(metric, str):
        name = getattr(metric, "name", None) or getattr(metric, "__name__", None)
        return name if isinstance(name, str) else None
    if metric in ("accuracy", "acc"):
        return "accuracy"
    from keras.src import metrics
    from keras.src.utils.naming import to_snake_case

    found = getattr(metrics, "ALL_OBJECTS_DICT", {}).get(metric)
    if isinstance(found, type):
        default = inspect.signature(found).parameters.get("name")
        if default is not None and isinstance(default.default, str):
            return default.default
        return str(to_snake_case(found.__name__))  # Keras's auto_name, without "_1"
    return metric if callable(found) else None


_KINDS = {
    # kind: (keras module, base class of its objects, example names)
    "optimizer": ("optimizers", "Optimizer", "'adam' or 'sgd'"),
    "loss": ("losses", "Loss", "'sparse_categorical_crossentropy' or 'mean_squared_error'"),
    "metric": ("metrics", "Metric", "'accuracy' or 'mae'"),
}


def check_keras_spec(kind: str, value: Any, path: str) -> None:
    """Check an optimizer, loss or metric given as a :data:`KerasSpec`, naming ``path``.

    A name (or a config's ``class_name``) is looked up as ``keras.<module>.get`` would
    look it up (optimizer names in any case, registered custom objects too), without
    instantiating anything. An object passes if it is of Keras's base class for ``kind``
    (or, for a loss or metric, any callable).

    Raises:
        ConfigError: naming ``path``, what was expected and what was received.

    Example:
        >>> check_keras_spec("loss", {"class_name": "Hubre"}, "train.fit.loss")
        Traceback (most recent call last):
        ...
        rxpipe.errors.ConfigError: train.fit.loss.class_name: expected a Keras loss name ...
    """
    import importlib

    import keras

    module_name, base_name, examples = _KINDS[kind]
    module = importlib.import_module(f"keras.src.{module_name}")
    name_path = path
    if isinstance(value, Mapping):
        name, name_path = value.get("class_name"), f"{path}.class_name"
        if not isinstance(name, str):
            raise ConfigError(
                f"expected a Keras {kind} config, a table with a 'class_name' (and optionally "
                f"a 'config' table). Received: {value!r}",
                path,
            )
        config = value.get("config", {})
        if not isinstance(config, Mapping):
            raise ConfigError(
                f"expected a table of the {kind}'s arguments. Received: {config!r}",
                f"{path}.config",
            )
        registered = value.get("registered_name")  # a custom class registered with Keras
        if isinstance(registered, str) and keras.saving.get_registered_object(registered):
            return
    elif isinstance(value, str):
        name = value
    else:
        base = getattr(getattr(keras, module_name), base_name)
        if isinstance(value, type) and issubclass(value, base):
            raise ConfigError(
                f"expected a Keras {kind} object, not its class. Received: the class "
                f"{value.__name__} (write {value.__name__}(...))",
                path,
            )
        if isinstance(value, base) or (kind != "optimizer" and callable(value)):
            return
        functions = "" if kind == "optimizer" else " or a function f(y_true, y_pred)"
        raise ConfigError(
            f"expected a Keras {kind} name such as {examples}, a Keras config "
            f"{{'class_name': ..., 'config': {{...}}}}, or in Python a keras.{module_name}."
            f"{base_name}{functions}. Received: {value!r} ({type(value).__name__})",
            path,
        )
    # Each module's ALL_OBJECTS_DICT is what its get() looks names up in; a Keras without
    # it skips the check here, and training checks the name when it starts.
    known = getattr(module, "ALL_OBJECTS_DICT", None)
    if known is None or (kind == "metric" and name in ("accuracy", "acc")):
        return
    key = name.lower() if kind == "optimizer" else name
    if callable(known.get(key)) or keras.saving.get_registered_object(name) is not None:
        return
    raise _unknown(kind, examples, name, known, name_path)


def _check_monitor(options: TrainOptions, plugin: str) -> None:
    """``monitor`` must be a value the run logs, and logged when early stopping needs it."""
    # By default a classifier logs accuracy (a regression model nothing): both allowed here.
    names = [logged_metric_name(m) for m in options.metrics_for(classification=True)]
    if None not in names:  # a metric Keras does not know: its name is known only later
        logged = ["loss", *(n for n in names if n is not None)]
        logged += [f"val_{n}" for n in logged]
        if options.monitor not in logged:
            close = difflib.get_close_matches(options.monitor, logged, n=1)
            hint = f". Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"expected a value the run logs: {', '.join(map(repr, logged))}. "
                f"Received: {options.monitor!r}{hint}",
                f"{plugin}.monitor",
            )
    if options.patience is not None and not options.validate and options.monitor.startswith("val_"):
        raise ConfigError(
            f"early stopping (patience={options.patience}) watches {options.monitor!r}, "
            "which only validation logs: expected validate=True (with a validation split), "
            "or a training value such as monitor='loss'. Received: validate=False",
            f"{plugin}.monitor",
        )


def check_names(options: TrainOptions, plugin: str) -> None:
    """Check the optimizer, loss, metrics, device, callbacks and monitor, as a stage is
    built.

    Names (and configs' class names) are looked up the way ``keras.optimizers.get``,
    ``keras.losses.get`` and ``keras.metrics.get`` resolve them, but nothing is
    instantiated and TensorFlow's runtime is not started (so memory growth and logical
    devices can still be set before the run); objects must be of Keras's classes (see
    :func:`check_keras_spec`). Training checks them again when it starts. ``monitor`` must be a
    value the run logs (``loss``, the metrics' names, and their ``val_`` variants), and
    with ``patience`` and ``validate=False`` not a ``val_`` one; every callback must be
    a ``keras.callbacks.Callback``.

    Args:
        options: the options to check.
        plugin: the plugin name errors start with, e.g. ``"train.fit"``.

    Raises:
        ConfigError: naming ``<plugin>.<option>`` (``<plugin>.metrics[i]`` for a metric,
            ``<plugin>.callbacks[i]`` for a callback), what was expected and what was
            received.

    Example:
        >>> check_names(TrainOptions(optimizer="adamm"), "train.fit")
        Traceback (most recent call last):
        ...
        rxpipe.errors.ConfigError: train.fit.optimizer: expected a Keras optimizer name ...
    """
    import keras

    from rxpipe.training.devices import check_device

    check_keras_spec("optimizer", options.optimizer, f"{plugin}.optimizer")
    default_rate = attrs.fields(TrainOptions).learning_rate.default
    if not isinstance(options.optimizer, str) and options.learning_rate != default_rate:
        raise ConfigError(
            "expected no learning_rate with an optimizer object or config, which carries "
            f"its own. Received: learning_rate={options.learning_rate!r} with "
            f"{options.optimizer!r}",
            f"{plugin}.learning_rate",
        )
    if options.loss is not None:
        check_keras_spec("loss", options.loss, f"{plugin}.loss")
    for index, metric in enumerate(options.metrics or ()):
        check_keras_spec("metric", metric, f"{plugin}.metrics[{index}]")
    if options.device is not None and options.strategy is None:
        check_device(options.device, f"{plugin}.device")
    for index, callback in enumerate(options.callbacks):
        if not isinstance(callback, keras.callbacks.Callback):
            hint = ""
            if isinstance(callback, str) and callback.startswith("<"):
                hint = (  # a callback object, as a run's pipeline.toml records it
                    "; a run's pipeline.toml records a callback as its repr: resume that run "
                    "from Python, with Pipeline.run(resume_from=RUN_DIR)"
                )
            raise ConfigError(
                f"expected a keras.callbacks.Callback. Received: {callback!r} "
                f"({type(callback).__name__}){hint}",
                f"{plugin}.callbacks[{index}]",
            )
    _check_monitor(options, plugin)

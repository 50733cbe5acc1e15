"""Training options, validated at construction (so a pipeline fails before it starts)."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Collection, Iterable
from typing import Any

import attrs

from rxpipe.errors import ConfigError

PRECISIONS = ("mixed_float16", "mixed_bfloat16")
STRATEGIES = ("mirrored", "multi_worker")


def _strings(value: Iterable[str] | None) -> tuple[str, ...] | None:
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
    loss: str | None = None
    metrics: tuple[str, ...] | None = attrs.field(default=None, converter=_strings)
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

    def metrics_for(self, classification: bool) -> tuple[str, ...]:
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


def logged_metric_name(metric: str) -> str | None:
    """The key a metric's values are logged under (``"mae"``: ``"mean_absolute_error"``).

    As training names it (see :mod:`rxpipe.training.steps`): ``"accuracy"`` and ``"acc"``
    as ``"accuracy"``; a Keras metric class by its default name (``"AUC"``: ``"auc"``,
    never ``"auc_1"``); a metric function by the name given. ``None`` for a name Keras
    does not know (nothing is instantiated, so TensorFlow's runtime is not started).

    Example:
        >>> logged_metric_name("mae"), logged_metric_name("AUC")
        ('mean_absolute_error', 'auc')
    """
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
    """Check the optimizer, loss, metric and device names, callbacks and monitor, as a
    stage is built.

    Names are looked up the way ``keras.optimizers.get``, ``keras.losses.get`` and
    ``keras.metrics.get`` resolve them, but nothing is instantiated and TensorFlow's
    runtime is not started (so memory growth and logical devices can still be set
    before the run). Training checks them again when it starts. ``monitor`` must be a
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
    from keras.src import losses, metrics, optimizers

    from rxpipe.training.devices import check_device

    # Each module's ALL_OBJECTS_DICT is what its get() looks names up in; a Keras without
    # it skips the check here, and training checks the name when it starts.
    optimizer_names = getattr(optimizers, "ALL_OBJECTS_DICT", None)
    name = options.optimizer
    if (
        isinstance(name, str)
        and optimizer_names is not None
        and name.lower() not in optimizer_names
        and keras.saving.get_registered_object(name) is None
    ):
        path = f"{plugin}.optimizer"
        raise _unknown("optimizer", "'adam' or 'sgd'", name, optimizer_names, path)
    loss_names = getattr(losses, "ALL_OBJECTS_DICT", None)
    if (
        options.loss is not None
        and loss_names is not None
        and not callable(loss_names.get(options.loss))
    ):
        examples = "'sparse_categorical_crossentropy' or 'mean_squared_error'"
        raise _unknown("loss", examples, options.loss, loss_names, f"{plugin}.loss")
    metric_names = getattr(metrics, "ALL_OBJECTS_DICT", None)
    for index, metric in enumerate(options.metrics or ()):
        if metric_names is None or metric in ("accuracy", "acc"):
            continue
        if not callable(metric_names.get(metric)):
            path = f"{plugin}.metrics[{index}]"
            raise _unknown("metric", "'accuracy' or 'mae'", metric, metric_names, path)
    if options.device is not None and options.strategy is None:
        check_device(options.device, f"{plugin}.device")
    for index, callback in enumerate(options.callbacks):
        if not isinstance(callback, keras.callbacks.Callback):
            raise ConfigError(
                f"expected a keras.callbacks.Callback. Received: {callback!r} "
                f"({type(callback).__name__})",
                f"{plugin}.callbacks[{index}]",
            )
    _check_monitor(options, plugin)

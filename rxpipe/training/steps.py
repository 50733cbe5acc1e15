"""Compiled train, test and predict steps for a Keras model (TensorFlow backend).

One code path for one device and for ``tf.distribute`` strategies: with a strategy the step
runs on every replica (``strategy.run``), the loss is summed over the *global* batch and
divided by its size, Keras's optimizer all-reduces the gradients, and metrics are updated
once with the gathered labels and predictions.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import attrs
import keras
import numpy as np
import tensorflow as tf
from keras.src.losses.losses import LossFunctionWrapper

from rxpipe.batch import DatasetMetadata
from rxpipe.errors import ConfigError
from rxpipe.model import is_binary
from rxpipe.training.checks import is_class_index
from rxpipe.training.options import logged_metric_name

__all__ = ["LogsRecorder", "Steps", "compile_steps", "predict_fn"]


def _metric(
    spec: Any, classification: bool, one_hot: bool = False, binary_threshold: float | None = None
) -> Any:
    """A new metric object for ``spec`` (a :data:`~rxpipe.training.options.KerasSpec`).

    A name is named as :func:`logged_metric_name` says. For a classifier, ``"accuracy"``
    (or ``"acc"``) is the sparse categorical accuracy for class-index labels, and the
    categorical accuracy for one-hot (or soft) labels (``one_hot``): the share of samples
    whose highest score is at the label's class; for a binary classifier of one output
    (``binary_threshold``: 0.5 for a probability, 0 for a logit), the binary accuracy.
    Keras names a second ``AUC()``
    ``"auc_1"``; the logs (and ``monitor``) use ``"auc"``. A metric object is copied (from
    its config), so the caller's object keeps its state and several runs can share it.
    """
    if isinstance(spec, Mapping):
        return keras.metrics.get(dict(spec))
    if isinstance(spec, keras.metrics.Metric):
        try:
            return type(spec).from_config(spec.get_config())
        except (TypeError, ValueError, NotImplementedError) as error:
            raise ConfigError(
                "metrics: expected a metric whose get_config() gives back its arguments (each "
                f"run makes its own copy). Received: {spec!r}, whose copy failed: {error}"
            ) from error
    if not isinstance(spec, str):
        return keras.metrics.MeanMetricWrapper(spec, name=logged_metric_name(spec))
    if classification and spec in ("accuracy", "acc"):
        if binary_threshold is not None:
            return keras.metrics.BinaryAccuracy(name="accuracy", threshold=binary_threshold)
        if one_hot:
            return keras.metrics.CategoricalAccuracy(name="accuracy")
        return keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    try:
        metric = keras.metrics.get(spec)
    except ValueError as error:
        raise ConfigError(f"metrics: expected Keras metric names. Received: {spec!r}") from error
    if isinstance(metric, keras.metrics.Metric):
        logged = logged_metric_name(spec)
        if logged is not None and metric.name != logged:
            metric = type(metric)(name=logged)
        return metric
    return keras.metrics.MeanMetricWrapper(metric, name=spec)


class LogsRecorder(keras.callbacks.Callback):  # type: ignore[misc]
    """Keeps the logs of the last ``on_epoch_end``, as the callbacks before it left them.

    Keras's ``CallbackList`` hands its callbacks a copy of the epoch's logs, to which
    some add values (``ReduceLROnPlateau`` and ``LearningRateScheduler`` add
    ``learning_rate``); Keras's ``History``, the last callback, records them. Placed
    last, this one does the same for the trainer.

    Example:
        >>> recorder = LogsRecorder()
        >>> recorder.on_epoch_end(0, {"loss": 0.5, "learning_rate": 0.01})
        >>> recorder.logs
        {'loss': 0.5, 'learning_rate': 0.01}
    """

    def __init__(self) -> None:
        super().__init__()
        self.logs: dict[str, Any] = {}

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.logs = dict(logs or {})


def make_optimizer(optimizer: Any, learning_rate: float, precision: str | None) -> Any:
    """A new Keras optimizer from a name (with ``learning_rate``), a Keras config or an
    optimizer object (copied from its config, with its own learning rate).

    Under ``mixed_float16`` it is wrapped in a ``LossScaleOptimizer``, so small float16
    gradients do not underflow.
    """
    if isinstance(optimizer, str):
        try:
            opt = keras.optimizers.get(optimizer)
        except ValueError as error:
            raise ConfigError(
                "optimizer: expected a Keras optimizer name such as 'adam' or 'sgd'. "
                f"Received: {optimizer!r}"
            ) from error
        opt = type(opt)(learning_rate=learning_rate)
    elif isinstance(optimizer, Mapping):
        opt = keras.optimizers.get(dict(optimizer))
    else:  # a copy: an optimizer is built for one model's variables
        opt = type(optimizer).from_config(optimizer.get_config())
    if precision == "mixed_float16" and not isinstance(opt, keras.optimizers.LossScaleOptimizer):
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def make_loss(loss: Any, classification: bool) -> Any:
    """The per-sample loss for ``loss`` (a :data:`~rxpipe.training.options.KerasSpec`, or
    ``None`` for the task's default): a ``keras.losses.Loss`` without reduction.

    As in Keras's own train step, the loss computes in float32 (its ``dtype``) whatever
    the model's outputs are (float16 under mixed precision).
    """
    default = "sparse_categorical_crossentropy" if classification else "mean_squared_error"
    spec = default if loss is None else loss
    try:
        found = keras.losses.get(dict(spec) if isinstance(spec, Mapping) else spec)
    except ValueError as error:
        raise ConfigError(f"loss: expected a Keras loss name. Received: {loss!r}") from error
    if isinstance(found, keras.losses.Loss):
        # a shallow copy, so the caller's object keeps its reduction (copy.copy would go
        # through Keras's serialization, which an unregistered Loss subclass fails)
        per_sample = object.__new__(type(found))
        per_sample.__dict__.update(found.__dict__)
    else:
        name = getattr(found, "__name__", "")
        valid = re.fullmatch(r"[A-Za-z0-9.][\w.\\/>-]*", name) is not None  # not "<lambda>"
        per_sample = LossFunctionWrapper(found, name=name if valid else None)
    per_sample.reduction = None
    return per_sample


def _finite_without_rows(gradient: Any, has_rows: tf.Tensor) -> Any:
    """``gradient``, or for a replica without rows its finite entries (NaN: 0).

    Without rows, the data's part of the loss is a sum of nothing, whose gradient is 0
    where it is not NaN (0 × the NaN of an empty mean); what is left is the replica's share
    of the regularization.
    """
    if gradient is None or isinstance(gradient, tf.IndexedSlices):
        return gradient  # no rows: no slices
    finite = tf.where(tf.math.is_finite(gradient), gradient, tf.zeros_like(gradient))
    return tf.where(has_rows, gradient, finite)


def _all_finite(gradients: list[Any]) -> tf.Tensor:
    """Whether every gradient is finite (one reduction per variable)."""
    checks = [
        tf.reduce_all(tf.math.is_finite(g.values if isinstance(g, tf.IndexedSlices) else g))
        for g in gradients
        if g is not None
    ]
    return tf.reduce_all(tf.stack(checks)) if checks else tf.constant(True)


def _from_logits(loss: Any) -> bool:
    """Whether a Keras loss takes logits (``from_logits=True`` in its config)."""
    try:
        config = loss.get_config()
    except (NotImplementedError, TypeError, ValueError, AttributeError):
        return False  # a custom loss without a config: no telling
    return bool(isinstance(config, Mapping) and config.get("from_logits"))


@attrs.define
class Steps:
    """The compiled steps of one model and the metric objects they update.

    Attributes:
        traces: how many times each step function was traced; a last partial batch
            must not add a trace (inputs have an unknown batch dimension).
        logits: the loss takes the model's outputs as logits (``from_logits=True``).
        nonfinite_step: the global step at which the loss (or, without loss scaling, a
            gradient) first became NaN or infinite,
            or -1; checked by the trainer without a host sync on every step.
    """

    model: Any
    optimizer: Any
    metrics: list[Any]
    val_metrics: list[Any]
    loss_tracker: Any
    val_loss_tracker: Any
    step_counter: Any
    nonfinite_step: Any
    train_step: Any = None
    test_step: Any = None
    traces: dict[str, int] = attrs.Factory(lambda: {"train": 0, "test": 0})
    logits: bool = False

    def logs(self, validation: bool) -> dict[str, float]:
        """Keras-style logs of the current epoch (``loss``, metrics, ``val_*``).

        During an epoch, the running means so far (what Keras passes to
        ``on_train_batch_end``).
        """
        logs = {"loss": float(self.loss_tracker.result())}
        logs.update({m.name: float(m.result()) for m in self.metrics})
        if validation:
            logs.update({f"val_{k}": v for k, v in self.validation_logs().items()})
        return logs

    def validation_logs(self) -> dict[str, float]:
        """The validation pass's ``loss`` and metrics so far, without the ``val_`` prefix
        (what Keras passes to ``on_test_batch_end`` and ``on_test_end``)."""
        logs = {"loss": float(self.val_loss_tracker.result())}
        logs.update({m.name: float(m.result()) for m in self.val_metrics})
        return logs

    def monitor_mode(self, monitor: str) -> str | None:
        """Whether ``monitor`` improves as it falls (``"min"``) or rises (``"max"``).

        ``loss`` (and ``val_loss``) falls; a metric goes the way its Keras object says
        (``_direction``, what Keras's ``mode="auto"`` reads from a compiled model).
        ``None`` for a name the run does not log, or a metric without a direction
        (e.g. ``TruePositives``).
        """
        name = monitor.removeprefix("val_")
        if name == "loss":
            return "min"
        for metric in self.metrics:
            if metric.name == name:
                direction = getattr(metric, "_direction", None)
                return {"up": "max", "down": "min"}.get(str(direction))
        return None

    def reset(self) -> None:
        """Reset every metric for a new epoch."""
        for metric in [self.loss_tracker, self.val_loss_tracker, *self.metrics, *self.val_metrics]:
            metric.reset_state()


class _OwnRetracingNotices(logging.Filter):
    """Drops TensorFlow's "triggered tf.function retracing" warning about these steps.

    Every run builds its own model and so its own compiled steps, each traced once (plus
    once for a smaller last batch under a strategy); several runs in one process (a
    search over parameters, the tests) make TensorFlow count the functions of one
    ``compile_steps`` together and warn of excessive retracing that is by design. Its
    warning about any other function is left alone.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("triggered tf.function retracing" in message and _OWN in message)


_OWN = "compile_steps.<locals>."  # how TensorFlow names these steps in the warning
_RETRACING_FILTER = _OwnRetracingNotices()


def compile_steps(
    model: Any,
    optimizer: Any,
    meta: DatasetMetadata,
    features: np.ndarray[Any, Any],
    labels: np.ndarray[Any, Any],
    loss: Any,
    metrics: tuple[Any, ...],
    *,
    jit_compile: bool = False,
    strategy: Any = None,
) -> Steps:
    """Trace-once train and test steps for ``model``.

    Metric variables are created outside any strategy scope and updated in cross-replica
    context with the gathered labels and predictions.

    Args:
        model: the (built) Keras model, created in ``strategy.scope()`` if there is one.
        optimizer: its optimizer, created in the same scope.
        meta: the training data's metadata (picks the default loss and metrics).
        features: an example batch of features (for the input signature).
        labels: an example batch of labels; for a classifier, class indices or one-hot
            rows pick the sparse or the categorical accuracy.
        loss: a :data:`~rxpipe.training.options.KerasSpec`, or ``None`` for the task's
            default.
        metrics: the metrics' :data:`~rxpipe.training.options.KerasSpec`.
        jit_compile: compile the steps with XLA.
        strategy: a ``tf.distribute`` strategy, or ``None`` for one device.
    """
    tf.get_logger().addFilter(_RETRACING_FILTER)  # once: addFilter keeps one copy
    classification = meta.num_classes is not None
    one_hot = classification and not is_class_index(labels)
    loss_fn = make_loss(loss, classification)
    logits = _from_logits(loss_fn)
    threshold = (0.0 if logits else 0.5) if is_binary(model, meta.label_names) else None
    steps = Steps(
        model=model,
        optimizer=optimizer,
        metrics=[_metric(m, classification, one_hot, threshold) for m in metrics],
        val_metrics=[_metric(m, classification, one_hot, threshold) for m in metrics],
        loss_tracker=keras.metrics.Mean(name="loss"),
        val_loss_tracker=keras.metrics.Mean(name="val_loss"),
        step_counter=tf.Variable(0, dtype=tf.int64, trainable=False),
        nonfinite_step=tf.Variable(-1, dtype=tf.int64, trainable=False),
        logits=logits,
    )
    scale = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1

    # Under a strategy a replica may get no rows (a batch smaller than the replicas, a
    # worker's empty share): it must add nothing, but a mean over 0 rows (BatchNormalization's
    # batch statistics) is NaN, and so are the gradients and moving statistics it makes.
    state = (
        [v for v in model.non_trainable_variables if keras.backend.is_float_dtype(v.dtype)]
        if strategy is not None
        else []
    )

    def sample_losses(y: tf.Tensor, predictions: tf.Tensor) -> tf.Tensor:
        """One float32 loss per sample: for outputs with more axes than a class axis (a
        sequence), the mean over them, as Keras's ``sum_over_batch_size`` takes it."""
        values = tf.cast(loss_fn(y, predictions), tf.float32)
        rank = values.shape.rank
        return tf.reduce_mean(values, axis=list(range(1, rank))) if rank and rank > 1 else values

    def replica_train(x: tf.Tensor, y: tf.Tensor, global_size: tf.Tensor) -> Any:
        has_rows = tf.shape(x)[0] > 0
        kept = [tf.identity(v.value) for v in state]
        with tf.GradientTape() as tape:
            predictions = model(x, training=True)
            per_sample = sample_losses(y, predictions)
            value = tf.reduce_sum(per_sample) / global_size
            if model.losses:
                value += tf.add_n(model.losses) / replicas
            scaled = optimizer.scale_loss(value) if scale else value
        gradients = tape.gradient(scaled, model.trainable_variables)
        if strategy is not None:  # a replica without rows: only finite (regularization) parts
            gradients = [_finite_without_rows(g, has_rows) for g in gradients]
            for variable, before in zip(state, kept, strict=True):
                variable.assign(tf.where(has_rows, variable.value, before))
        if not scale:  # (loss scaling makes non-finite gradients on purpose, and skips them)
            # a finite loss with non-finite gradients breaks the weights: count it as this
            # step's, not as the next step's, whose loss it makes NaN
            value = tf.where(_all_finite(gradients), value, tf.constant(np.nan, value.dtype))
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return value, predictions

    def replica_test(x: tf.Tensor, y: tf.Tensor, global_size: tf.Tensor) -> Any:
        predictions = model(x, training=False)
        per_sample = sample_losses(y, predictions)
        value = tf.reduce_sum(per_sample) / global_size
        if model.losses:  # as Keras's test step: the regularization losses count too
            value += tf.add_n(model.losses) / replicas
        return value, predictions

    def run(fn: Any, x: Any, y: Any) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        if strategy is None:
            size = tf.cast(tf.shape(x)[0], tf.float32)
            value, predictions = fn(x, y, size)
            return value, y, predictions
        size = tf.cast(
            strategy.reduce("SUM", strategy.run(lambda x: tf.shape(x)[0], (x,)), None), tf.float32
        )
        value, predictions = strategy.run(fn, (x, y, size))
        value = strategy.reduce("SUM", value, axis=None)
        return value, strategy.gather(y, axis=0), strategy.gather(predictions, axis=0)

    def update(
        tracker: Any, metric_list: list[Any], value: tf.Tensor, y: tf.Tensor, p: tf.Tensor
    ) -> None:
        tracker.update_state(value, sample_weight=tf.shape(y)[0])
        for metric in metric_list:
            metric.update_state(y, p)

    def train_step(x: Any, y: Any) -> tf.Tensor:
        steps.traces["train"] += 1
        value, y_all, predictions = run(replica_train, x, y)
        update(steps.loss_tracker, steps.metrics, value, y_all, predictions)
        step = steps.step_counter.assign_add(1)
        bad = tf.logical_and(tf.logical_not(tf.math.is_finite(value)), steps.nonfinite_step < 0)
        steps.nonfinite_step.assign(tf.where(bad, step, steps.nonfinite_step))
        return value

    def test_step(x: Any, y: Any) -> tf.Tensor:
        steps.traces["test"] += 1
        value, y_all, predictions = run(replica_test, x, y)
        update(steps.val_loss_tracker, steps.val_metrics, value, y_all, predictions)
        return value

    if strategy is None:
        x_spec = tf.TensorSpec((None, *features.shape[1:]), tf.as_dtype(features.dtype))
        y_spec = tf.TensorSpec((None, *labels.shape[1:]), tf.as_dtype(labels.dtype))
        signature = tf.function(input_signature=[x_spec, y_spec], jit_compile=jit_compile)
        steps.train_step = OneTrace(signature(train_step))
        steps.test_step = OneTrace(signature(test_step))
    else:  # distributed values have no fixed signature; retracing is relaxed instead
        relaxed = tf.function(reduce_retracing=True, jit_compile=jit_compile)
        steps.train_step = relaxed(train_step)
        steps.test_step = relaxed(test_step)
    return steps


class OneTrace:
    """Calls a ``tf.function`` of a fixed input signature through its one concrete function.

    Each call of a ``tf.function`` first binds its arguments to the signature and looks up
    the trace in its cache, in Python, holding the GIL; its concrete function skips most
    of that. Measured on this project's 2-core machine: 150 µs a call through the
    ``tf.function``, 75 µs through the concrete function, and the benchmark CNN's train
    step (2.5–4 ms) 6% faster. The first call traces (as a ``tf.function`` does), later
    ones go straight to the trace.

    Example:
        >>> spec = tf.TensorSpec((None,), tf.float32)
        >>> double = OneTrace(tf.function(lambda x: 2 * x, input_signature=[spec]))
        >>> [double(tf.constant([1.0, 2.0])).numpy().tolist(), double(tf.ones(1)).numpy().tolist()]
        [[2.0, 4.0], [2.0]]
    """

    def __init__(self, function: Any) -> None:
        self.function = function
        self._concrete: Any = None

    def __call__(self, *args: Any) -> Any:
        if self._concrete is not None:
            return self._concrete(*args)
        result = self.function(*args)  # traces, creating any variables the trace needs
        self._concrete = self.function.get_concrete_function()
        return result


def predict_fn(model: Any, features: np.ndarray[Any, Any]) -> Any:
    """A compiled inference function for batches shaped like ``features``."""
    spec = tf.TensorSpec((None, *features.shape[1:]), tf.as_dtype(features.dtype))

    @tf.function(input_signature=[spec])
    def predict(x: tf.Tensor) -> tf.Tensor:
        return model(x, training=False)

    return OneTrace(predict)

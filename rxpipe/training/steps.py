"""Compiled train, test and predict steps for a Keras model (TensorFlow backend)."""

from __future__ import annotations

from typing import Any

import attrs
import keras
import numpy as np
import tensorflow as tf

from rxpipe.batch import DatasetMetadata
from rxpipe.errors import ConfigError


def _metric(name: str, classification: bool) -> Any:
    if classification and name in ("accuracy", "acc"):
        return keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    try:
        metric = keras.metrics.get(name)
    except ValueError as error:
        raise ConfigError(f"metrics: expected Keras metric names. Received: {name!r}") from error
    return (
        metric
        if isinstance(metric, keras.metrics.Metric)
        else keras.metrics.MeanMetricWrapper(metric, name=name)
    )


@attrs.define
class Steps:
    """The compiled steps of one model, and the metric objects they update.

    Attributes:
        traces: how many times each step function was traced (a retrace storm shows here).
    """

    model: keras.Model
    optimizer: Any
    loss_fn: Any
    metrics: list[Any]
    val_metrics: list[Any]
    loss_tracker: Any
    val_loss_tracker: Any
    train_step: Any = None
    test_step: Any = None
    traces: dict[str, int] = attrs.Factory(lambda: {"train": 0, "test": 0})

    def logs(self, validation: bool) -> dict[str, float]:
        """Keras-style logs of the current epoch (``loss``, metrics, ``val_*``)."""
        logs = {"loss": float(self.loss_tracker.result())}
        logs.update({m.name: float(m.result()) for m in self.metrics})
        if validation:
            logs["val_loss"] = float(self.val_loss_tracker.result())
            logs.update({f"val_{m.name}": float(m.result()) for m in self.val_metrics})
        return logs

    def reset(self) -> None:
        """Reset every metric for a new epoch."""
        for metric in [self.loss_tracker, self.val_loss_tracker, *self.metrics, *self.val_metrics]:
            metric.reset_state()


def compile_steps(
    model: keras.Model,
    meta: DatasetMetadata,
    features: np.ndarray[Any, Any],
    labels: np.ndarray[Any, Any],
    optimizer: str,
    learning_rate: float,
    loss: str | None,
    metrics: tuple[str, ...],
) -> Steps:
    """Build the optimizer, loss and metrics and trace-once step functions for ``model``.

    Input signatures have an unknown batch dimension, so a last partial batch does not
    trigger a retrace.
    """
    classification = meta.num_classes is not None
    try:
        opt = keras.optimizers.get(optimizer)
    except ValueError as error:
        raise ConfigError(
            "optimizer: expected a Keras optimizer name such as 'adam' or 'sgd'. "
            f"Received: {optimizer!r}"
        ) from error
    opt = type(opt)(learning_rate=learning_rate)
    loss_name = loss or (
        "sparse_categorical_crossentropy" if classification else "mean_squared_error"
    )
    try:
        loss_fn = keras.losses.get(loss_name)
    except ValueError as error:
        raise ConfigError(f"loss: expected a Keras loss name. Received: {loss_name!r}") from error
    steps = Steps(
        model=model,
        optimizer=opt,
        loss_fn=loss_fn,
        metrics=[_metric(m, classification) for m in metrics],
        val_metrics=[_metric(m, classification) for m in metrics],
        loss_tracker=keras.metrics.Mean(name="loss"),
        val_loss_tracker=keras.metrics.Mean(name="val_loss"),
    )
    x_spec = tf.TensorSpec((None, *features.shape[1:]), tf.as_dtype(features.dtype))
    y_spec = tf.TensorSpec((None, *labels.shape[1:]), tf.as_dtype(labels.dtype))

    @tf.function(input_signature=[x_spec, y_spec])
    def train_step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        steps.traces["train"] += 1
        with tf.GradientTape() as tape:
            predictions = model(x, training=True)
            value = tf.reduce_mean(loss_fn(y, predictions))
            if model.losses:
                value += tf.add_n(model.losses)
        gradients = tape.gradient(value, model.trainable_variables)
        opt.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        steps.loss_tracker.update_state(value, sample_weight=tf.shape(x)[0])
        for metric in steps.metrics:
            metric.update_state(y, predictions)
        return value

    @tf.function(input_signature=[x_spec, y_spec])
    def test_step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        steps.traces["test"] += 1
        predictions = model(x, training=False)
        value = tf.reduce_mean(loss_fn(y, predictions))
        steps.val_loss_tracker.update_state(value, sample_weight=tf.shape(x)[0])
        for metric in steps.val_metrics:
            metric.update_state(y, predictions)
        return value

    steps.train_step = train_step
    steps.test_step = test_step
    return steps


def predict_fn(model: keras.Model, features: np.ndarray[Any, Any]) -> Any:
    """A compiled inference function for batches shaped like ``features``."""
    spec = tf.TensorSpec((None, *features.shape[1:]), tf.as_dtype(features.dtype))

    @tf.function(input_signature=[spec])
    def predict(x: tf.Tensor) -> tf.Tensor:
        return model(x, training=False)

    return predict

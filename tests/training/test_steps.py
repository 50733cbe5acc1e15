"""Tests of the step builders' Keras objects: losses, metrics and optimizers."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pytest

from rxpipe.training.steps import _metric, make_loss, make_optimizer

LABELS = np.array([0, 2, 1])
SCORES = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [2.0, 1.0, 3.0]], "float32")


def test_a_loss_object_gives_one_value_per_sample_and_stays_as_it_was() -> None:
    """The caller's Loss keeps its reduction; the copy computes per-sample values with its
    own arguments (here from_logits)."""
    given = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    per_sample = make_loss(given, classification=True)
    expected = keras.losses.sparse_categorical_crossentropy(LABELS, SCORES, from_logits=True)
    np.testing.assert_allclose(per_sample(LABELS, SCORES), expected, rtol=1e-6)
    assert given.reduction == "sum_over_batch_size"
    assert float(given(LABELS, SCORES)) == pytest.approx(float(np.mean(expected)), rel=1e-6)


@pytest.mark.parametrize(
    "spec",
    [
        None,
        "sparse_categorical_crossentropy",
        {"class_name": "SparseCategoricalCrossentropy"},
        keras.losses.sparse_categorical_crossentropy,
    ],
    ids=["default", "name", "config", "function"],
)
def test_every_form_of_a_loss_computes_in_float32(spec: Any) -> None:
    """As Keras's train step does, float16 outputs (mixed precision) are lost in float32."""
    probabilities = keras.ops.softmax(SCORES).numpy().astype("float16")
    values = make_loss(spec, classification=True)(LABELS, probabilities)
    assert values.dtype == "float32"
    assert values.shape == (3,)
    expected = keras.losses.sparse_categorical_crossentropy(LABELS, probabilities.astype("float32"))
    np.testing.assert_allclose(values, expected, rtol=1e-6)


def test_a_metric_object_is_copied_with_its_configuration() -> None:
    """Each run gets new metric objects; the caller's keeps its state."""
    given = keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2")
    copy = _metric(given, classification=True)
    assert copy is not given
    assert (copy.name, copy.get_config()["k"]) == ("top2", 2)
    copy.update_state(LABELS, SCORES)
    assert float(given.result()) == 0.0
    assert float(copy.result()) == pytest.approx(2 / 3)


def test_a_metric_function_or_config_becomes_a_named_metric() -> None:
    """A function logs under its name; a config builds its class with its arguments."""

    def off_by(y_true: Any, y_pred: Any) -> Any:
        return keras.ops.abs(y_true - y_pred)

    assert _metric(off_by, classification=False).name == "off_by"
    auc = _metric({"class_name": "AUC", "config": {"num_thresholds": 7}}, classification=False)
    assert auc.num_thresholds == 7


def test_an_optimizer_object_or_config_is_copied_with_its_own_learning_rate() -> None:
    """An object is copied (it is built for one model's variables); learning_rate applies
    only to an optimizer given by name."""
    given = keras.optimizers.SGD(0.25, momentum=0.5)
    made = make_optimizer(given, learning_rate=1e-3, precision=None)
    assert made is not given
    assert float(made.learning_rate) == pytest.approx(0.25)
    assert made.momentum == 0.5
    config = {"class_name": "Adam", "config": {"learning_rate": 0.125}}
    assert float(make_optimizer(config, 1e-3, None).learning_rate) == pytest.approx(0.125)
    scaled = make_optimizer(given, 1e-3, "mixed_float16")
    assert isinstance(scaled, keras.optimizers.LossScaleOptimizer)
    assert float(make_optimizer("sgd", 0.5, None).learning_rate) == pytest.approx(0.5)


class _ScaledCE(keras.losses.Loss):  # type: ignore[misc]
    """An unregistered Loss subclass (Keras's serialization cannot rebuild it)."""

    def __init__(self, factor: float) -> None:
        super().__init__(name="scaled_ce")
        self.factor = factor

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return self.factor * keras.losses.sparse_categorical_crossentropy(y_true, y_pred)


def test_custom_losses_and_lambdas_give_one_value_per_sample() -> None:
    """An unregistered Loss subclass is copied without Keras's serialization; a lambda
    (whose name Keras cannot scope) works as any function."""
    probabilities = keras.ops.softmax(SCORES).numpy()
    expected = keras.losses.sparse_categorical_crossentropy(LABELS, probabilities).numpy()
    given = _ScaledCE(2.0)
    np.testing.assert_allclose(make_loss(given, True)(LABELS, probabilities), 2 * expected)
    assert given.reduction == "sum_over_batch_size"
    twice = make_loss(lambda y, p: 2 * keras.losses.sparse_categorical_crossentropy(y, p), True)
    np.testing.assert_allclose(twice(LABELS, probabilities), 2 * expected, rtol=1e-6)


class _Top1(keras.metrics.Metric):  # type: ignore[misc]
    """A metric whose get_config() does not give back its argument."""

    def __init__(self, k: int) -> None:
        super().__init__(name="top1")
        self.k = k


def test_a_metric_that_cannot_be_copied_is_a_config_error() -> None:
    """Each run copies its metrics; one whose config does not rebuild it says so."""
    from rxpipe.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^metrics: expected a metric whose get_config\(\)"):
        _metric(_Top1(1), classification=True)


def test_a_sequence_output_loss_is_the_mean_over_its_values_as_in_keras() -> None:
    """Outputs of (samples, 5, 1): the loss is Keras's mean over every value, not 5 times it."""
    from rxpipe.testing import make_metadata
    from rxpipe.training.steps import compile_steps

    x = np.random.default_rng(0).random((16, 5, 2)).astype("float32")
    y = np.random.default_rng(1).random((16, 5, 1)).astype("float32")
    model = keras.Sequential([keras.Input((5, 2)), keras.layers.Dense(1)])
    optimizer = make_optimizer("sgd", 0.0, None)
    optimizer.build(model.trainable_variables)
    steps = compile_steps(model, optimizer, make_metadata(x[:, 0], y[:, 0, 0]), x, y, "mse", ())
    ours = float(steps.test_step(x, y))
    keras_loss = float(keras.losses.MeanSquaredError()(y, model(x)))
    assert ours == pytest.approx(keras_loss, rel=1e-6)


def test_infinite_embedding_gradients_are_caught() -> None:
    """The finite check looks into sparse (Embedding) gradients too."""
    import tensorflow as tf

    from rxpipe.training.steps import _all_finite

    dense = tf.constant([1.0, 2.0])
    sparse = tf.IndexedSlices(tf.constant([[np.inf]]), tf.constant([0]), tf.constant([3, 1]))
    assert bool(_all_finite([dense, None]))
    assert not bool(_all_finite([dense, sparse]))


def test_one_trace_serves_every_batch_size_from_one_trace() -> None:
    """OneTrace traces on its first call and runs later calls, of any batch size, on that
    trace, with the tf.function's results."""
    import tensorflow as tf

    from rxpipe.training.steps import OneTrace

    traced: list[int] = []

    def total(x: Any) -> Any:
        traced.append(1)
        return tf.reduce_sum(x, axis=1)

    function = tf.function(total, input_signature=[tf.TensorSpec((None, 2), tf.float32)])
    one = OneTrace(function)
    batches = [
        np.ones((3, 2), np.float32),
        np.ones((1, 2), np.float32),
        np.zeros((5, 2), np.float32),
    ]
    assert [one(tf.constant(b)).numpy().tolist() for b in batches] == [[2.0] * 3, [2.0], [0.0] * 5]
    assert len(traced) == 1

"""Tests for the training loop: logs, traces, callbacks, early stopping, NaN, options."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import reactivex

import rxpipe
from rxpipe import BatchError, ConfigError, StageError, TrainingError
from rxpipe.operators import access, collect, models, process, train
from rxpipe.testing import EventRecorder, from_arrays, make_metadata

pytestmark = pytest.mark.slow


def test_training_learns_and_logs_keras_keys(small_digits: Any, runs_dir: Path) -> None:
    """Epoch logs use Keras's keys and the loss goes down."""
    result = small_digits(epochs=3).run(progress=False)
    history = result.history
    assert [set(h) for h in history] == [{"loss", "accuracy", "val_loss", "val_accuracy"}] * 3
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["val_accuracy"] > 0.3  # chance is 0.1


def test_partial_last_batch_does_not_retrace(small_digits: Any, runs_dir: Path) -> None:
    """Steps are traced once, though the last batch of every epoch is smaller; every
    EpochEnded event (events.jsonl, the log) reports the count so far."""
    result = small_digits(epochs=2).run(progress=False)
    assert result.trained is not None
    assert result.trained.stats["traces"] == {"train": 1, "test": 1}
    assert result.run_dir is not None
    lines = (result.run_dir / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    epochs = [e for e in events if e["event"] == "epoch_ended"]
    assert [e["traces"] for e in epochs] == [{"train": 1, "test": 1}] * 2


def test_batch_size_rebatches_training_data(small_digits: Any, runs_dir: Path) -> None:
    """train.fit's batch_size re-cuts the stream: about 320 samples / 100 = 4 steps."""
    result = small_digits(epochs=1, batch_size=100).run(progress=False)
    assert result.trained is not None
    assert result.trained.stats["steps_per_epoch"] == 4


def test_keras_callbacks_get_logs_and_can_stop_training(small_digits: Any, runs_dir: Path) -> None:
    """Callbacks receive Keras-style logs and model.stop_training ends training."""

    class StopAfterTwo(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[dict[str, float]] = []
            self.batches = 0

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.batches += 1

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.seen.append(dict(logs))
            if epoch == 1:
                self.model.stop_training = True

    callback = StopAfterTwo()
    result = small_digits(epochs=10, callbacks=[callback]).run(progress=False)
    assert len(result.history) == 2
    assert callback.seen == list(result.history)
    assert callback.batches > 10


def test_early_stopping_from_options(small_digits: Any, runs_dir: Path) -> None:
    """patience stops when the monitored value stops improving by min_delta."""
    result = small_digits(epochs=30, patience=1, monitor="loss", min_delta=100.0).run(
        progress=False
    )
    assert len(result.history) == 2  # epoch 1 sets the baseline, epoch 2 is no improvement


META = rxpipe.DatasetMetadata("tiny", rxpipe.FeatureSpec((4,), "float32"), ("a", "b", "c"))
"""Four float features, three classes."""


def tiny_pipeline(
    runs_dir: Path,
    features: np.ndarray[Any, Any],
    labels: np.ndarray[Any, Any],
    *,
    meta: rxpipe.DatasetMetadata | None = META,
    outputs: int = 3,
    layers: tuple[Any, ...] = (),
    **fit: Any,
) -> rxpipe.Pipeline:
    """``features`` and ``labels`` in training batches of 16 (sample ids 0..n-1), a Dense
    model (``layers`` first) with ``outputs`` outputs, and one epoch of train.fit(**fit)."""

    def build(_: rxpipe.DatasetMetadata) -> keras.Model:
        head = keras.layers.Dense(outputs, activation="softmax" if outputs > 1 else None)
        return keras.Sequential([keras.Input(features.shape[1:]), *layers, head])

    source = from_arrays(features, labels, batch_size=16, split="train", metadata=meta)
    plan = lambda data: reactivex.just(rxpipe.ModelPlan("tiny", data, build))  # noqa: E731
    fit = {"epochs": 1, "validate": False, **fit}
    return rxpipe.Pipeline(plan, train.fit(**fit), source=source, name="tiny", runs_dir=runs_dir)


def tiny_data(n: int = 64) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """``n`` samples of four features in [0, 1) and labels 0, 1, 2, 0, ..."""
    return np.random.default_rng(0).random((n, 4)).astype("float32"), np.arange(n) % 3


def test_nan_loss_names_epoch_step_and_samples(runs_dir: Path) -> None:
    """A non-finite loss stops the run with an error naming epoch, step and the step's batch."""
    features, labels = tiny_data()
    features[40] = 1000.0  # finite, but exp(1000) is not: the loss of step 3 becomes NaN
    exp = keras.layers.Activation("exponential")
    pipeline = tiny_pipeline(runs_dir, features, labels, layers=(exp,), epochs=2)
    with pytest.raises(TrainingError, match=r"NaN or infinite at epoch 1, step 3") as info:
        pipeline.run(progress=False)
    assert info.value.sample_ids == tuple(range(32, 48))


class _ScaledAbs(keras.layers.Layer):  # type: ignore[misc]
    """|x * w| as sqrt((x * w)²): finite everywhere, but its gradient at 0 is 0 × inf = NaN."""

    def build(self, shape: Any) -> None:
        self.w = self.add_weight(shape=(shape[-1],), initializer="ones")

    def call(self, x: Any) -> Any:
        return keras.ops.sqrt(keras.ops.square(x * self.w))


def test_nan_gradients_of_a_finite_loss_name_their_own_step(runs_dir: Path) -> None:
    """A step whose loss is finite but whose gradients are NaN is the one named (its NaN
    weights would make the next step's loss NaN, blaming innocent samples)."""
    features, labels = tiny_data()
    features[40] = 0.0  # the gradient of sqrt(u) at u = 0 is infinite: NaN in step 3
    pipeline = tiny_pipeline(runs_dir, features, labels, layers=(_ScaledAbs(),), epochs=1)
    with pytest.raises(TrainingError, match=r"NaN or infinite at epoch 1, step 3") as info:
        pipeline.run(progress=False)
    assert info.value.sample_ids == tuple(range(32, 48))


@pytest.mark.parametrize(
    ("at", "value", "message"),
    [
        ("features", np.nan, "train.fit: expected finite feature values. Received: NaN or "),
        ("features", -np.inf, "train.fit: expected finite feature values."),
        (
            "labels",
            7,
            "train.fit: expected class indices from 0 to 2 (one per label name: 'a', 'b', 'c')."
            " Received: 7 for samples [40]",
        ),
        ("labels", -1, "Received: -1 for samples [40]"),
        ("regression", np.nan, "train.fit: expected finite labels. Received: NaN or infinite"),
    ],
    ids=["nan-feature", "inf-feature", "label-too-big", "label-negative", "nan-label"],
)
def test_bad_values_are_named_by_sample_before_training_on_them(
    runs_dir: Path, at: str, value: float, message: str
) -> None:
    """A NaN or infinite value, or a label out of range, in the third batch: its sample id."""
    features, labels = tiny_data()
    meta: rxpipe.DatasetMetadata | None = META
    if at == "features":
        features[40, 2] = value
    elif at == "labels":
        labels[40] = value
    else:  # a regression target
        labels = labels.astype("float32")
        labels[40] = value
        meta = None
    recorder = EventRecorder()
    pipeline = tiny_pipeline(runs_dir, features, labels, meta=meta, outputs=3 if meta else 1)
    with pytest.raises(StageError) as info:
        pipeline.run(progress=False, subscribers=[recorder])
    assert (info.value.stage, info.value.sample_ids) == ("train.fit", (40,))
    assert isinstance(info.value.cause, BatchError)
    assert message in str(info.value)
    assert not recorder.of_type(rxpipe.EpochEnded)  # the epoch with it never ended


def one_hot_data(n: int = 64) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """:func:`tiny_data` with its labels as float32 one-hot rows."""
    features, labels = tiny_data(n)
    return features, np.eye(3, dtype="float32")[labels]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            [0.5, 0.5, 0.5],
            "train.fit: expected one-hot (or soft) labels: rows of 3 non-negative values summing "
            "to 1, one per label name ('a', 'b', 'c'). Received: [0.5, 0.5, 0.5] (sum 1.5) for "
            "samples [40]",
        ),
        ([1.5, -0.5, 0.0], "Received: [1.5, -0.5, 0] (sum 1) for samples [40]"),
        ([0.0, 0.0, 0.0], "Received: [0, 0, 0] (sum 0) for samples [40]"),
        ([np.nan, 1.0, 0.0], "train.fit: expected finite labels. Received: NaN or infinite"),
    ],
    ids=["sum", "negative", "zeros", "nan"],
)
def test_a_one_hot_row_that_is_not_a_distribution_is_named_by_sample(
    runs_dir: Path, row: list[float], message: str
) -> None:
    """A bad one-hot row in the third batch: its sample id, before training on it."""
    features, labels = one_hot_data()
    labels[40] = row
    recorder = EventRecorder()
    pipeline = tiny_pipeline(runs_dir, features, labels, loss="categorical_crossentropy")
    with pytest.raises(StageError) as info:
        pipeline.run(progress=False, subscribers=[recorder])
    assert (info.value.stage, info.value.sample_ids) == ("train.fit", (40,))
    assert isinstance(info.value.cause, BatchError)
    assert message in str(info.value)
    assert not recorder.of_type(rxpipe.EpochEnded)


def test_one_hot_rows_of_the_wrong_width_fail_before_the_first_step(runs_dir: Path) -> None:
    """Rows of 4 values for 3 label names: the first batch's samples, expected and received."""
    features, labels = tiny_data()
    recorder = EventRecorder()
    onehot = np.eye(4, dtype="float32")[labels]
    pipeline = tiny_pipeline(runs_dir, features, onehot, loss="categorical_crossentropy")
    with pytest.raises(StageError) as info:
        pipeline.run(progress=False, subscribers=[recorder])
    assert info.value.sample_ids == tuple(range(16))
    assert isinstance(info.value.cause, BatchError)
    assert (
        "expected one-hot (or soft) labels: rows of 3 non-negative values summing to 1, one "
        "per label name ('a', 'b', 'c'). Received: labels of shape (16, 4) for samples [0, 1, "
    ) in str(info.value)
    assert not recorder.of_type(rxpipe.TrainProgress)


def test_a_batch_of_class_indices_among_one_hot_batches_is_named(runs_dir: Path) -> None:
    """The steps are traced for the first batch's label format; another one is a BatchError."""
    features, labels = one_hot_data()

    def batches() -> Any:
        for start in range(0, 64, 16):
            part = slice(start, start + 16)
            y = labels[part] if start != 32 else labels[part].argmax(axis=1)
            yield rxpipe.Batch(features[part], y, np.arange(64)[part], META, "train")

    source = rxpipe.flow.generate(batches)
    plan = lambda data: reactivex.just(  # noqa: E731
        rxpipe.ModelPlan(
            "tiny",
            data,
            lambda _: keras.Sequential(
                [keras.Input((4,)), keras.layers.Dense(3, activation="softmax")]
            ),
        )
    )
    fit = train.fit(epochs=1, validate=False, loss="categorical_crossentropy")
    pipeline = rxpipe.Pipeline(plan, fit, source=source, name="tiny", runs_dir=runs_dir)
    with pytest.raises(StageError) as info:
        pipeline.run(progress=False)
    assert info.value.sample_ids == tuple(range(32, 48))
    assert (
        "train.fit: expected one-hot labels of width 3, as in the first batch. Received: "
        "labels of shape (16,) for samples [32, 33, "
    ) in str(info.value)


@pytest.mark.parametrize(
    ("loss", "outputs", "message"),
    [
        (
            None,
            3,
            "expected class-index labels (one per sample) for 'sparse_categorical_crossentropy'. "
            "Received: None (the default, 'sparse_categorical_crossentropy'), with labels of "
            "shape (16, 3) (for one-hot labels, set 'categorical_crossentropy')",
        ),
        (
            "categorical_crossentropy",
            2,
            "expected a model with one score per class (3) for one-hot labels of width 3. "
            "Received: 'categorical_crossentropy', for a model with 2 output(s) per sample",
        ),
    ],
    ids=["default-loss", "model-width"],
)
def test_one_hot_labels_with_a_loss_or_model_for_other_labels_are_a_config_error(
    runs_dir: Path, loss: str | None, outputs: int, message: str
) -> None:
    """One-hot rows need a categorical loss and one score per class: before any step."""
    features, labels = one_hot_data()
    pipeline = tiny_pipeline(runs_dir, features, labels, outputs=outputs, loss=loss)
    with pytest.raises(StageError) as info:
        pipeline.run(progress=False)
    assert isinstance(info.value.cause, ConfigError)
    assert info.value.cause.path == "train.fit.loss"
    assert message in str(info.value)


@pytest.mark.parametrize("metric", ["accuracy", "acc"])
def test_one_hot_digits_train_exactly_like_their_class_indices(
    digit_arrays: Any, metric: str
) -> None:
    """Categorical cross-entropy on one-hot rows, sparse on indices: the same losses and
    accuracies (categorical accuracy for one-hot rows), and the digits are learnt."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    histories = []
    for labels, loss in (
        (digits.target.astype("int64"), None),
        (np.eye(10, dtype="float32")[digits.target], "categorical_crossentropy"),
    ):
        pipeline = digit_arrays(labels, epochs=3, loss=loss, metrics=(metric,))
        histories.append(pipeline.run(progress=False).history)
    indices, one_hot = histories
    keys = {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert [set(h) for h in one_hot] == [keys] * 3
    assert one_hot == [pytest.approx(h, rel=1e-3) for h in indices]
    assert one_hot[-1]["val_accuracy"] > 0.8  # chance is 0.1


def test_text_features_for_a_numeric_model_are_a_batch_error(runs_dir: Path) -> None:
    """Object-dtype features fail before the first step, saying what to do instead."""
    features = np.array([["a", "b"]] * 8, dtype=object)
    pipeline = tiny_pipeline(runs_dir, features, np.arange(8) % 2, meta=None, outputs=2)
    with pytest.raises(StageError, match="expected numeric features .* Received: dtype object"):
        pipeline.run(progress=False)


@pytest.mark.parametrize(
    ("loss", "outputs", "message"),
    [
        ("mse", 3, "'mean_squared_error' compares the scores with a class index. Received: 'mse'"),
        ("binary_crossentropy", 3, "Received: 'binary_crossentropy' (for a regression model"),
        (
            "categorical_crossentropy",
            3,
            "'categorical_crossentropy' needs one-hot labels of width 3. Received: "
            "'categorical_crossentropy', with labels of shape (16,)",
        ),
        (
            None,
            1,
            "expected a model with one score per class (3) for 'sparse_categorical_crossentropy'"
            ". Received: None (the default, 'sparse_categorical_crossentropy'), for a model "
            "with 1 output(s)",
        ),
    ],
    ids=["mse", "binary", "categorical", "default-on-one-output"],
)
def test_a_loss_that_does_not_fit_the_labels_is_a_config_error(
    runs_dir: Path, loss: str | None, outputs: int, message: str
) -> None:
    """Class-index labels with a loss for other labels or another model: before any step."""
    features, labels = tiny_data()
    pipeline = tiny_pipeline(runs_dir, features, labels, outputs=outputs, loss=loss)
    recorder = EventRecorder()
    with pytest.raises(StageError) as info:
        pipeline.run(progress=False, subscribers=[recorder])
    assert isinstance(info.value.cause, ConfigError)
    assert info.value.cause.path == "train.fit.loss"
    assert message in str(info.value)
    assert not recorder.of_type(rxpipe.TrainProgress)


def test_patience_without_a_validation_split_fails_before_training(
    small_digits: Any, runs_dir: Path
) -> None:
    """Early stopping on val_loss with no validation batches fails before the first epoch."""
    pipeline = rxpipe.Pipeline(
        *small_digits().stages[:1],
        access.split(train=0.9, validation=0.0, test=0.1),
        *small_digits().stages[2:-1],
        train.fit(epochs=3, patience=1),
        name="novalidation",
        runs_dir=runs_dir,
    )
    recorder = EventRecorder()
    with pytest.raises(TrainingError) as info:
        pipeline.run(progress=False, subscribers=[recorder])
    assert "early stopping (patience=1) watches 'val_loss': expected batches with split " in str(
        info.value
    )
    assert "or set monitor='loss'" in str(info.value)
    assert not recorder.of_type(rxpipe.EpochEnded)


def test_metrics_are_logged_under_one_name_per_run() -> None:
    """A metric class Keras names auto_1, auto_2... is named as logged_metric_name says."""
    from rxpipe.training.options import logged_metric_name
    from rxpipe.training.steps import _metric

    names = {_metric("AUC", True).name for _ in range(3)}
    assert names == {"auc"} == {logged_metric_name("AUC")}
    assert _metric("mae", False).name == logged_metric_name("mae") == "mean_absolute_error"


def test_no_training_split_is_explained(small_digits: Any, runs_dir: Path) -> None:
    """Without a train split the error says to add access.split."""
    source = from_arrays(np.zeros((8, 8, 8, 1), "float32"), np.arange(8) % 2)
    pipeline = rxpipe.Pipeline(
        models.cnn(), train.fit(epochs=1), source=source, name="x", runs_dir=runs_dir
    )
    with pytest.raises(TrainingError, match="add access.split"):
        pipeline.run(progress=False)


def test_progress_events_arrive_during_epochs(small_digits: Any, runs_dir: Path) -> None:
    """TrainProgress events report steps and a finite loss."""
    pipeline = small_digits(epochs=2, limit=1797)
    recorder = EventRecorder()
    pipeline.events.subscribe(recorder)
    train_stage = pipeline.stages[-1]
    assert isinstance(train_stage, rxpipe.Stage)
    pipeline.run(progress=False)
    progress = recorder.of_type(rxpipe.TrainProgress)
    assert all(np.isfinite(p.loss) and p.step >= 1 for p in progress)
    second = [p for p in progress if p.epoch == 2]
    assert all(p.steps is not None for p in second)


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_with_float32_variables(
    small_digits: Any, runs_dir: Path, precision: str
) -> None:
    """Mixed precision computes in 16 bits, keeps float32 weights and restores the policy."""
    result = small_digits(epochs=1, precision=precision).run(progress=False)
    model = result.model
    assert model is not None
    assert {v.dtype for v in model.trainable_variables} == {"float32"}
    assert model.layers[1].compute_dtype == precision.removeprefix("mixed_")
    assert keras.config.dtype_policy().name == "float32"
    assert np.isfinite(result.history[0]["loss"])


def test_xla_and_explicit_device(small_digits: Any, runs_dir: Path) -> None:
    """jit_compile and an explicit CPU device train normally."""
    result = small_digits(epochs=1, jit_compile=True, device="/CPU:0").run(progress=False)
    assert np.isfinite(result.history[0]["loss"])


@pytest.mark.parametrize("device", ["/GPU:0", "/CPU:3", "/TPU:0"])
def test_training_checks_the_device_again_when_it_starts(device: str) -> None:
    """choose_device (at run time, after train.fit's own check) rejects a missing device."""
    from rxpipe.training.devices import choose_device

    with pytest.raises(ConfigError, match="device: expected one of this machine's devices") as info:
        choose_device(device)
    assert repr(device) in str(info.value)
    assert "CPU:0" in str(info.value)


def test_memory_growth_is_accepted_without_gpus(small_digits: Any, runs_dir: Path) -> None:
    """memory_growth is a no-op on a machine without GPUs."""
    from rxpipe.training.devices import choose_device, set_memory_growth

    assert set_memory_growth() == []
    assert choose_device(None) == "/CPU:0"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"epochs": 0}, "epochs: expected an int >= 1"),
        ({"precision": "float8"}, "precision: expected None or one of"),
        ({"strategy": "ring"}, "strategy: expected None or one of"),
        ({"device": "cuda"}, "device: expected a TensorFlow device"),
        ({"learning_rate": 0.0}, "learning_rate: expected a number > 0"),
    ],
)
def test_invalid_options_fail_at_construction(params: dict[str, Any], message: str) -> None:
    """Bad options are rejected when the stage is built, before any data flows."""
    with pytest.raises(ConfigError, match=message):
        train.fit(**params)


def test_same_seed_and_determinism_give_identical_weights(
    small_digits: Any, runs_dir: Path
) -> None:
    """Two deterministic runs with the same seed end with identical weights."""
    weights = []
    for _ in range(2):
        result = small_digits(epochs=2, deterministic=True).run(progress=False)
        assert result.model is not None
        weights.append([w.copy() for w in result.model.get_weights()])
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_training_gives_back_the_callers_random_state(small_digits: Any) -> None:
    """The run seeds Python's and NumPy's global generators; the caller's draws go on as if
    it had not run."""
    import random

    random.seed(123)
    np.random.seed(123)
    expected = (random.random(), np.random.rand())
    random.seed(123)
    np.random.seed(123)
    small_digits(epochs=1).run(progress=False)
    assert (random.random(), np.random.rand()) == expected


def test_make_metadata_helper_describes_arrays() -> None:
    """rxpipe.testing.make_metadata derives shapes and classes from arrays."""
    meta = make_metadata(np.zeros((3, 2), "float32"), np.array([0, 2, 1]))
    assert meta.num_classes == 3
    assert meta.feature_spec.shape == (2,)
    _ = access  # the access plugins are used by small_digits


def test_a_stop_request_cancels_training_at_the_next_step(
    small_digits: Any, runs_dir: Path
) -> None:
    """request_stop (what SIGTERM does inside Keras code) fails the run as cancelled."""
    import json

    from rxpipe.training.trainer import clear_stop_requests, request_stop, waits_for_next_step

    class StopAtEpochEnd(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            request_stop("SIGTERM")

    recorder = EventRecorder()
    pipeline = small_digits(epochs=5, callbacks=[StopAtEpochEnd()])
    try:
        with pytest.raises(rxpipe.PipelineCancelled, match=r"interrupted \(SIGTERM\)"):
            pipeline.run(progress=False, subscribers=[recorder])
    finally:
        clear_stop_requests()
    assert len(recorder.of_type(rxpipe.EpochEnded)) == 1
    [run_dir] = (runs_dir / "small").iterdir()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"
    assert not waits_for_next_step(None)  # no training under way: interrupts raise at once


# Keras parity: the same data, order and seed through train.fit and keras.Model.fit.

TRAIN, VALIDATION = 70, 37


def parity_data(n_train: int = TRAIN) -> tuple[np.ndarray[Any, Any], ...]:
    """Features in [0, 1) and noisy labels of 3 classes: train and validation arrays."""
    rng = np.random.default_rng(0)
    x = rng.random((n_train + VALIDATION, 4)).astype("float32")
    y = (x[:, 0] * 3).astype("int64") % 3
    y[::5] = (y[::5] + 1) % 3
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def parity_model(_: Any = None, regularizer: Any = None) -> keras.Model:
    """A small MLP (the same initial weights for the same seed)."""
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu", kernel_regularizer=regularizer),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )


def parity_pipeline(
    runs_dir: Path,
    data: tuple[np.ndarray[Any, Any], ...],
    build: Any = parity_model,
    *,
    name: str = "parity",
    seed: int = 0,
    **fit: Any,
) -> rxpipe.Pipeline:
    """``data``'s train and validation splits in batches of 16, ``build``'s model and
    train.fit(**fit) with a learning rate of 0.01."""
    xt, yt, xv, yv = data
    source = reactivex.concat(
        from_arrays(xt, yt, batch_size=16, split="train", metadata=META),
        from_arrays(xv, yv, batch_size=16, split="validation", metadata=META),
    )
    plan = lambda d: reactivex.just(rxpipe.ModelPlan("parity", d, build))  # noqa: E731
    fit = {"learning_rate": 0.01, **fit}
    return rxpipe.Pipeline(
        plan, train.fit(**fit), source=source, name=name, seed=seed, runs_dir=runs_dir
    )


def keras_fit(
    data: tuple[np.ndarray[Any, Any], ...], build: Any = parity_model, **fit: Any
) -> tuple[keras.Model, list[dict[str, float]]]:
    """keras.Model.fit on ``data`` (batches of 16, no shuffling, seed 0): model and history."""
    xt, yt, xv, yv = data
    keras.utils.set_random_seed(0)
    model = build()
    model.compile(
        keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    fit = {"validation_data": (xv, yv), **fit}
    history = model.fit(xt, yt, batch_size=16, shuffle=False, verbose=0, **fit).history
    epochs = len(next(iter(history.values())))
    return model, [{k: v[i] for k, v in history.items()} for i in range(epochs)]


def assert_same_training(
    result: rxpipe.RunResult, model: keras.Model, history: list[dict[str, float]]
) -> None:
    """The same logs (to float32 precision) and the same weights."""
    assert result.history == [pytest.approx(h, rel=1e-6) for h in history]
    for ours, theirs in zip(result.model.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)


def test_val_loss_counts_regularization_losses_as_keras_does(runs_dir: Path) -> None:
    """With an L2 penalty, loss and val_loss both include it, as in keras.Model.fit."""
    data = parity_data()
    build = lambda _=None: parity_model(regularizer=keras.regularizers.L2(0.05))  # noqa: E731
    result = parity_pipeline(runs_dir, data, build, epochs=2).run(progress=False)
    assert_same_training(result, *keras_fit(data, build, epochs=2))


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_exactly_as_keras_does(runs_dir: Path, precision: str) -> None:
    """Under mixed precision the loss is computed in float32 from the 16-bit outputs, as in
    keras.Model.fit (in 16 bits the weights drifted from Keras's by up to 4e-3)."""
    data = parity_data()
    result = parity_pipeline(runs_dir, data, epochs=3, precision=precision).run(progress=False)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        model, history = keras_fit(data, epochs=3)
    finally:
        keras.config.set_dtype_policy(previous)
    assert_same_training(result, model, history)


@pytest.mark.parametrize("monitor", ["val_accuracy", "accuracy", "val_loss"])
def test_early_stopping_watches_a_metric_in_its_direction(runs_dir: Path, monitor: str) -> None:
    """Early stopping on accuracy (rises) or a loss (falls) stops as Keras's EarlyStopping
    with the same direction does."""
    data = parity_data()
    mode = "min" if monitor.endswith("loss") else "max"
    options = {"epochs": 8, "min_delta": 0.02}
    result = parity_pipeline(runs_dir, data, patience=1, monitor=monitor, **options)
    stop = keras.callbacks.EarlyStopping(
        monitor, min_delta=0.02, patience=1, mode=mode, restore_best_weights=True
    )
    assert_same_training(result.run(progress=False), *keras_fit(data, epochs=8, callbacks=[stop]))


def test_a_metric_without_direction_cannot_be_monitored(runs_dir: Path) -> None:
    """TruePositives says neither 'rise' nor 'fall': a ConfigError before training."""
    pipeline = parity_pipeline(
        runs_dir,
        parity_data(),
        epochs=2,
        metrics=["accuracy", "TruePositives"],
        monitor="true_positives",
        patience=1,
    )
    recorder = EventRecorder()
    with pytest.raises(StageError) as info:
        pipeline.run(progress=False, subscribers=[recorder])
    assert isinstance(info.value.cause, ConfigError)
    assert info.value.cause.path == "train.fit.monitor"
    assert "Received: 'true_positives', of keras.metrics.TruePositives, which says neither" in str(
        info.value
    )
    assert not recorder.of_type(rxpipe.EpochEnded)


def test_stock_keras_callbacks_work_and_their_logs_are_kept(runs_dir: Path) -> None:
    """LearningRateScheduler, ReduceLROnPlateau (mode auto on val_accuracy), ProgbarLogger
    and keras.callbacks.TensorBoard run as in Keras; the learning_rate they log reaches the
    history and EpochEnded; the trained model keeps no optimizer (nor would a saved one)."""
    data = parity_data()
    halve = lambda epoch, lr: lr * 0.5 if epoch else lr  # noqa: E731

    def callbacks() -> list[Any]:
        return [
            keras.callbacks.LearningRateScheduler(halve),
            keras.callbacks.ReduceLROnPlateau("val_accuracy", factor=0.5, patience=0),
            keras.callbacks.ProgbarLogger(),
        ]

    ours = callbacks()
    board = keras.callbacks.TensorBoard(str(runs_dir / "board"), write_graph=False)
    recorder = EventRecorder()
    result = parity_pipeline(runs_dir, data, epochs=3, callbacks=[*ours, board]).run(
        progress=False, subscribers=[recorder]
    )
    model, history = keras_fit(data, epochs=3, callbacks=callbacks())
    assert_same_training(result, model, history)
    assert [h["learning_rate"] for h in result.history] == pytest.approx([0.01, 0.005, 0.00125])
    assert [e.logs for e in recorder.of_type(rxpipe.EpochEnded)] == result.history
    assert ours[0].params == {"verbose": 0, "epochs": 3, "steps": None}
    assert list((runs_dir / "board").rglob("events.out.tfevents.*"))
    assert not hasattr(result.model, "optimizer")


def test_callback_hooks_and_logs_are_those_of_keras(runs_dir: Path) -> None:
    """Every hook is called as often as keras.Model.fit calls it, with the same logs
    (running means in batch hooks; validation logs without val_ in test hooks)."""
    hooks = [
        "on_train_begin",
        "on_train_end",
        "on_epoch_begin",
        "on_epoch_end",
        "on_train_batch_begin",
        "on_train_batch_end",
        "on_test_begin",
        "on_test_end",
        "on_test_batch_begin",
        "on_test_batch_end",
    ]

    class Recorder(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[tuple[str, Any, dict[str, float]]] = []

    def make(hook: str) -> Any:
        def record(self: Recorder, *args: Any, logs: Any = None) -> None:
            given = args[-1] if args and isinstance(args[-1], dict) else logs
            index = args[0] if args and not isinstance(args[0], dict) else None
            self.calls.append((hook, index, dict(given or {})))

        return record

    for hook in hooks:
        setattr(Recorder, hook, make(hook))
    data = parity_data()
    ours, theirs = Recorder(), Recorder()
    parity_pipeline(runs_dir, data, epochs=2, callbacks=[ours]).run(progress=False)
    keras_fit(data, epochs=2, callbacks=[theirs])
    assert [c[:2] for c in ours.calls] == [c[:2] for c in theirs.calls]
    for (hook, _, got), (_, _, expected) in zip(ours.calls, theirs.calls, strict=True):
        assert got == pytest.approx(expected, rel=1e-6), hook


def test_stop_training_in_a_batch_hook_ends_the_epoch_after_that_batch(runs_dir: Path) -> None:
    """As in Keras: the epoch ends after the batch, is validated, and training ends."""

    class StopAtSecondBatch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if batch == 1:
                self.model.stop_training = True

    data = parity_data()
    recorder = EventRecorder()
    result = parity_pipeline(runs_dir, data, epochs=5, callbacks=[StopAtSecondBatch()]).run(
        progress=False, subscribers=[recorder]
    )
    assert [(e.epoch, e.steps) for e in recorder.of_type(rxpipe.EpochEnded)] == [(1, 2)]
    assert_same_training(result, *keras_fit(data, epochs=5, callbacks=[StopAtSecondBatch()]))


def test_steps_per_epoch_goes_on_through_the_pass_as_keras_does(runs_dir: Path) -> None:
    """96 samples are 6 batches: 2 steps per epoch take 3 epochs per pass; 4 steps per
    epoch end every second epoch early (2 steps) at the end of the pass."""
    data = parity_data(96)
    for steps, epochs in ((2, 4), (4, 3)):
        pipeline = parity_pipeline(
            runs_dir, data, epochs=epochs, steps_per_epoch=steps, validate=False
        )
        recorder = EventRecorder()
        result = pipeline.run(progress=False, subscribers=[recorder])
        ended = recorder.of_type(rxpipe.EpochEnded)
        assert [e.steps for e in ended] == ([2, 2, 2, 2] if steps == 2 else [4, 2, 4])
        with warnings.catch_warnings():  # Keras warns when an epoch ends with the data
            warnings.filterwarnings("ignore", "Your input ran out of data")
            model, history = keras_fit(
                data, epochs=epochs, steps_per_epoch=steps, validation_data=None
            )
        assert_same_training(result, model, history)


def test_a_validation_split_without_batches_is_read_once(runs_dir: Path) -> None:
    """validate=True with no validation batches: one validation pass finds none, the
    later epochs read no more (each pass reads the whole source)."""
    xt, yt, _, _ = parity_data()
    passes: list[int] = []

    def subscribe(_: Any) -> reactivex.Observable[rxpipe.Batch]:
        passes.append(0)
        return from_arrays(xt, yt, batch_size=16, split="train", metadata=META)

    plan = lambda d: reactivex.just(rxpipe.ModelPlan("p", d, parity_model))  # noqa: E731
    pipeline = rxpipe.Pipeline(
        plan, train.fit(epochs=3), source=reactivex.defer(subscribe), runs_dir=runs_dir
    )
    result = pipeline.run(progress=False)
    assert len(passes) == 1 + 3 + 1  # the first batch's peek, 3 epochs, 1 validation pass
    assert set(result.history[-1]) == {"loss", "accuracy"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("features-float64", "expected features of dtype float32 and shape (batch, 4), as in"),
        ("labels-int32", "Received: dtype int32 and shape (batch,) for samples [32, 33, "),
        ("features-width", "Received: dtype float32 and shape (batch, 5) for samples [32, "),
    ],
)
def test_a_batch_of_another_dtype_or_shape_is_named(
    runs_dir: Path, change: str, message: str
) -> None:
    """The step is built for the first batch's dtypes and shapes: the third batch differs."""
    features, labels = tiny_data()

    def batches() -> Any:
        for start in range(0, 64, 16):
            x, y = features[start : start + 16], labels[start : start + 16]
            if start == 32:
                if change == "features-float64":
                    x = x.astype("float64")
                elif change == "labels-int32":
                    y = y.astype("int32")
                else:
                    x = np.pad(x, ((0, 0), (0, 1)))
            yield rxpipe.Batch(x, y, np.arange(start, start + 16), META, "train")

    plan = lambda d: reactivex.just(rxpipe.ModelPlan("p", d, parity_model))  # noqa: E731
    fit = train.fit(epochs=1, validate=False)
    source = rxpipe.flow.generate(batches)
    pipeline = rxpipe.Pipeline(plan, fit, source=source, runs_dir=runs_dir)
    with pytest.raises(StageError) as info:
        pipeline.run(progress=False)
    assert isinstance(info.value.cause, BatchError)
    assert info.value.sample_ids == tuple(range(32, 48))
    assert message in str(info.value)


def test_a_regression_model_logs_no_accuracy_by_default(runs_dir: Path) -> None:
    """The default metrics are accuracy for a classifier and none for a regression model."""
    features, _ = tiny_data()
    targets = features @ np.array([1.0, 2.0, 3.0, 4.0], "float32")
    pipeline = tiny_pipeline(runs_dir, features, targets, meta=None, outputs=1)
    assert set(pipeline.run(progress=False).history[0]) == {"loss"}


def test_train_batch_size_is_the_global_batch_of_all_workers() -> None:
    """With a shard per worker, re-batching comes first: the two workers' k-th batches
    split the k-th batch of batch_size between them."""
    from rxpipe.testing import collect
    from rxpipe.training.trainer import split_stream

    features, labels = tiny_data(100)
    data = from_arrays(features, labels, batch_size=16, split="train", metadata=META)
    workers = [
        [b.ids.tolist() for b in collect(split_stream(data, rxpipe.Split.TRAIN, 10, (i, 2, 0)))]
        for i in range(2)
    ]
    assert [len(w) for w in workers] == [10, 10]
    for k, (first, second) in enumerate(zip(*workers, strict=True)):
        assert sorted(first + second) == list(range(10 * k, 10 * k + 10))


PLACED = """
import sys
import numpy as np
import reactivex
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
tf.debugging.set_log_device_placement(True)
import keras
import rxpipe
from rxpipe.operators import train
from rxpipe.testing import from_arrays

meta = rxpipe.DatasetMetadata("tiny", rxpipe.FeatureSpec((4,), "float32"), ("a", "b", "c"))
x = np.random.default_rng(0).random((64, 4)).astype("float32")
y = np.arange(64) % 3
source = reactivex.concat(
    from_arrays(x[:48], y[:48], batch_size=16, split="train", metadata=meta),
    from_arrays(x[48:], y[48:], batch_size=16, split="validation", metadata=meta),
)
build = lambda _: keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
plan = lambda d: reactivex.just(rxpipe.ModelPlan("tiny", d, build))
fit = train.fit(epochs=1, device="/CPU:1", checkpoint=False)
result = rxpipe.Pipeline(plan, fit, source=source, runs_dir=sys.argv[1]).run(progress=False)
print(sorted({v.value.device.rpartition("/")[2] for v in result.model.weights}))
"""


def test_an_explicit_device_runs_the_steps_there(tmp_path: Path) -> None:
    """device="/CPU:1" (of 2 logical CPUs) places the variables and runs the train and
    validation steps there, as TensorFlow's placement log shows."""
    import os
    import subprocess
    import sys

    script = tmp_path / "placed.py"
    script.write_text(PLACED)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"}
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "['device:CPU:1']"
    for step in ("train_step", "test_step"):
        placed = {
            line.rpartition(" in device ")[2].rpartition("/")[2]
            for line in out.stderr.splitlines()
            if f"Executing op __inference_{step}" in line
        }
        assert placed == {"device:CPU:1"}, step


def test_the_retracing_warning_about_rxpipes_own_steps_is_dropped(small_digits: Any) -> None:
    """Each run compiles its own steps; TensorFlow's warning that several runs' steps were
    traced is dropped, its warning about any other function kept."""
    import logging

    import tensorflow as tf

    small_digits(epochs=1).run(progress=False)
    logger = tf.get_logger()

    def passes(function: str) -> bool:
        message = f"5 out of the last 13 calls to <function {function} at 0x7f> triggered tf.function retracing. Tracing is expensive"  # noqa: E501
        record = logging.LogRecord("tensorflow", logging.WARNING, "", 0, message, None, None)
        return all(f.filter(record) for f in logger.filters if isinstance(f, logging.Filter))

    assert not passes("compile_steps.<locals>.test_step")
    assert passes("my_model.<locals>.predict")


def test_a_regression_head_on_labelled_data_gets_a_regressions_defaults(runs_dir: Path) -> None:
    """models.mlp(head="regression") on iris (class indices as numbers): train.fit's default
    loss is the mean squared error and it logs no accuracy, as for any regression."""
    from rxpipe.operators import evaluate

    pipeline = rxpipe.Pipeline(
        collect.iris(),
        access.split(train=0.8, validation=0.2, test=0.0),
        access.batch(16),
        process.standardize(),
        models.mlp(hidden=(16,), head="regression"),
        train.fit(epochs=8, learning_rate=0.01),
        evaluate.regression(split="validation"),
        name="iris-values",
        runs_dir=runs_dir,
    )
    result = pipeline.run(progress=False)
    assert set(result.history[0]) == {"loss", "val_loss"}
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.metrics["validation"]["r2"] > 0.5

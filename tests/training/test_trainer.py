"""Tests for the training loop: logs, traces, callbacks, early stopping, NaN, options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import reactivex

import rxpipe
from rxpipe import ConfigError, TrainingError
from rxpipe.operators import access, models, train
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
    """Steps are traced once, though the last batch of every epoch is smaller."""
    result = small_digits(epochs=2).run(progress=False)
    assert result.trained is not None
    assert result.trained.stats["traces"] == {"train": 1, "test": 1}


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


def test_nan_loss_names_epoch_and_step(small_digits: Any, runs_dir: Path) -> None:
    """A non-finite loss stops the run with an error naming epoch and step."""
    features = np.random.default_rng(0).random((64, 4)).astype("float32")
    features[40] = np.nan
    labels = np.arange(64) % 2
    source = from_arrays(features, labels, batch_size=16, split="train")

    def mlp(meta: rxpipe.DatasetMetadata) -> keras.Model:
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])

    plan = lambda data: reactivex.just(rxpipe.ModelPlan("mlp", data, mlp))  # noqa: E731
    pipeline = rxpipe.Pipeline(
        plan, train.fit(epochs=2, validate=False), source=source, name="nan", runs_dir=runs_dir
    )
    with pytest.raises(TrainingError, match=r"NaN or infinite at epoch 1, step 3"):
        pipeline.run(progress=False)


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
def test_a_device_the_machine_lacks_is_a_clear_error(small_digits: Any, device: str) -> None:
    """Asking for a missing device fails before training instead of using the CPU silently."""
    with pytest.raises(
        rxpipe.StageError, match="device: expected one of this machine's devices"
    ) as info:
        small_digits(epochs=1, device=device).run(progress=False)
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


def test_unknown_optimizer_is_a_clear_error(small_digits: Any, runs_dir: Path) -> None:
    """An unknown optimizer name fails the train stage naming the value."""
    with pytest.raises(rxpipe.StageError, match="optimizer: expected a Keras optimizer name"):
        small_digits(epochs=1, optimizer="adamw2").run(progress=False)


def test_make_metadata_helper_describes_arrays() -> None:
    """rxpipe.testing.make_metadata derives shapes and classes from arrays."""
    meta = make_metadata(np.zeros((3, 2), "float32"), np.array([0, 2, 1]))
    assert meta.num_classes == 3
    assert meta.feature_spec.shape == (2,)
    _ = access  # the access plugins are used by small_digits

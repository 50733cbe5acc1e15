"""Tests for train.fit's construction: names are checked when the stage is built."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import keras
import pytest

from rxpipe import ConfigError, Pipeline, StageError
from rxpipe.operators import train


@pytest.mark.parametrize(
    ("params", "start", "end"),
    [
        (
            {"optimizer": "nope"},
            "train.fit.optimizer: expected a Keras optimizer name such as 'adam' or 'sgd'.",
            "Received: 'nope'",
        ),
        (
            {"optimizer": "adamm"},
            "train.fit.optimizer: expected a Keras optimizer name",
            "Received: 'adamm'. Did you mean: 'adam', 'nadam', 'adamw'?",
        ),
        ({"loss": "nope"}, "train.fit.loss: expected a Keras loss name", "Received: 'nope'"),
        (
            {"metrics": ["accuracy", "nope"]},
            "train.fit.metrics[1]: expected a Keras metric name such as 'accuracy' or 'mae'.",
            "Received: 'nope'",
        ),
        (
            {"device": "/GPU:9"},
            "train.fit.device: expected one of this machine's devices ['/CPU:0'",
            "Received: '/GPU:9'",
        ),
        (
            {"device": "/CPU:3"},
            "train.fit.device: expected one of this machine's devices",
            "Received: '/CPU:3'",
        ),
    ],
    ids=["optimizer", "optimizer-typo", "loss", "metric", "gpu", "cpu-index"],
)
def test_unknown_names_fail_when_the_stage_is_built(
    params: dict[str, Any], start: str, end: str
) -> None:
    """An unknown optimizer, loss, metric or device is a ConfigError naming the parameter."""
    with pytest.raises(ConfigError) as info:
        train.fit(**params)
    assert str(info.value).startswith(start)
    assert str(info.value).endswith(end)


def test_known_names_are_accepted() -> None:
    """Keras's names (any case for optimizers, aliases, class names) and present devices pass."""
    stage = train.fit(optimizer="SGD", loss="mse", metrics=["mae", "AUC"], device="/cpu:0")
    assert stage.params["optimizer"] == "SGD"
    train.fit(loss="SparseCategoricalCrossentropy", metrics=["acc"])


def test_keras_objects_and_configs_are_accepted() -> None:
    """In Python, optimizer, loss and metric objects (and functions); anywhere, Keras configs."""
    import keras

    def half_error(y_true: Any, y_pred: Any) -> Any:
        return keras.ops.mean(keras.ops.abs(y_true - y_pred), axis=-1) / 2

    train.fit(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.Huber(),
        metrics=[keras.metrics.AUC(name="roc"), half_error],
        monitor="val_half_error",
    )
    train.fit(
        loss=half_error,
        monitor="val_roc",
        metrics=[{"class_name": "AUC", "config": {"name": "roc"}}],
    )
    train.fit(
        optimizer={"class_name": "SGD", "config": {"learning_rate": 0.1, "momentum": 0.9}},
        loss={"class_name": "SparseCategoricalCrossentropy", "config": {"from_logits": True}},
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"loss": {"class_name": "Hubre"}},
            "train.fit.loss.class_name: expected a Keras loss name such as "
            "'sparse_categorical_crossentropy' or 'mean_squared_error'. Received: 'Hubre'. "
            "Did you mean: 'Huber'",
        ),
        (
            {"optimizer": {"config": {"learning_rate": 0.1}}},
            "train.fit.optimizer: expected a Keras optimizer config, a table with a "
            "'class_name' (and optionally a 'config' table). Received: {'config':",
        ),
        (
            {"metrics": [{"class_name": "AUC", "config": 3}]},
            "train.fit.metrics[0].config: expected a table of the metric's arguments. Received: 3",
        ),
        (
            {"optimizer": object()},
            "train.fit.optimizer: expected a Keras optimizer name such as 'adam' or 'sgd', a "
            "Keras config {'class_name': ..., 'config': {...}}, or in Python a "
            "keras.optimizers.Optimizer. Received: <object object",
        ),
        (
            {"metrics": ["accuracy", 3]},
            "train.fit.metrics[1]: expected a Keras metric name such as 'accuracy' or 'mae', "
            "a Keras config {'class_name': ..., 'config': {...}}, or in Python a "
            "keras.metrics.Metric or a function f(y_true, y_pred). Received: 3 (int)",
        ),
        (
            {"loss": "no_such_module_xyz:loss"},
            "train.fit.loss: expected an importable module 'no_such_module_xyz'",
        ),
        (
            {"metrics": ["accuracy", keras.metrics.AUC]},
            "train.fit.metrics[1]: expected a Keras metric object, not its class. Received: the "
            "class AUC (write AUC(...))",
        ),
        (
            {"optimizer": {"class_name": "SGD"}, "learning_rate": 0.5},
            "train.fit.learning_rate: expected no learning_rate with an optimizer object or "
            "config, which carries its own. Received: learning_rate=0.5 with",
        ),
    ],
    ids=[
        "config-typo",
        "config-without-class",
        "config-not-a-table",
        "object",
        "metric",
        "path",
        "metric-class",
        "rate-with-object",
    ],
)
def test_bad_keras_configs_and_objects_name_the_field(params: dict[str, Any], message: str) -> None:
    """A config without a known class_name, or an object of the wrong kind: a ConfigError."""
    with pytest.raises(ConfigError) as info:
        train.fit(**params)
    assert str(info.value).startswith(message)


def test_keras_objects_are_written_to_the_pipeline_file_as_configs(tmp_path: Path) -> None:
    """A run's pipeline.toml holds Keras configs for objects and import paths for importable
    functions, so the file builds the same stage again."""
    import json

    import keras
    import tomli_w

    from rxpipe.config import load_config
    from rxpipe.operators import collect, models

    stage = train.fit(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[
            "accuracy",
            keras.metrics.SparseTopKCategoricalAccuracy(k=3, name="top3"),
            json.dumps,
        ],
    )
    pipeline = Pipeline(collect.digits(), models.mlp(), stage, name="objects")
    path = tmp_path / "pipeline.toml"
    path.write_text(tomli_w.dumps(pipeline.config.to_dict()))  # as a run writes it
    [*_, spec] = load_config(path).plugins
    assert spec.params["loss"]["class_name"] == "SparseCategoricalCrossentropy"
    assert spec.params["loss"]["config"]["from_logits"] is True
    assert spec.params["optimizer"]["config"]["momentum"] == 0.9
    assert spec.params["metrics"][1]["config"] == {"name": "top3", "dtype": "float32", "k": 3}
    assert spec.params["metrics"][2] == "json:dumps"
    rebuilt = Pipeline(*Pipeline.from_file(path).stages, name="objects")
    assert rebuilt.config.plugins[-1].params == spec.params


def test_a_pipeline_file_names_the_field(tmp_path: Path) -> None:
    """Built from a pipeline file, the error names plugins[i].param before any data is read."""
    path = tmp_path / "p.toml"
    path.write_text(
        '[[plugins]]\nuse = "collect.digits"\n'
        '[[plugins]]\nuse = "train.fit"\nmetrics = ["accuracy", "nope"]\n'
    )
    with pytest.raises(ConfigError, match=r"^plugins\[1\]\.metrics\[1\]: expected a Keras metric"):
        Pipeline.from_file(path)
    with pytest.raises(ConfigError, match=r"^plugins\[1\]\.optimizer: expected a Keras optimizer"):
        Pipeline.from_file(path, ['train.fit.metrics=["mae"]', 'train.fit.optimizer="nope"'])


CONSTRUCT_THEN_CONFIGURE = """
import tensorflow as tf
from rxpipe.operators import train

train.fit(optimizer="sgd", loss="mse", metrics=["mae", "AUC"], device="/CPU:0")
train.fit(loss={"class_name": "Huber"}, metrics=[{"class_name": "AUC", "config": {"name": "a"}}])
cpu = tf.config.list_physical_devices("CPU")[0]
# Raises RuntimeError if building the stage had started TensorFlow's runtime.
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
train.fit(device="/CPU:1")  # a configured logical device counts
print(len(tf.config.list_logical_devices("CPU")))
"""


@pytest.mark.slow
def test_building_the_stage_leaves_devices_configurable(tmp_path: Path) -> None:
    """Checking names does not start TensorFlow's runtime: devices can be configured after."""
    script = tmp_path / "configure.py"
    script.write_text(textwrap.dedent(CONSTRUCT_THEN_CONFIGURE))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "2"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"monitor": "val_lozz", "patience": 2},
            "train.fit.monitor: expected a value the run logs: 'loss', 'accuracy', 'val_loss', "
            "'val_accuracy'. Received: 'val_lozz'. Did you mean 'val_loss'?",
        ),
        (
            {"monitor": "val_mae", "metrics": ["mae"]},
            "train.fit.monitor: expected a value the run logs: 'loss', 'mean_absolute_error', "
            "'val_loss', 'val_mean_absolute_error'. Received: 'val_mae'",
        ),
        (
            {"patience": 3, "validate": False},
            "train.fit.monitor: early stopping (patience=3) watches 'val_loss', which only "
            "validation logs: expected validate=True (with a validation split), or a training "
            "value such as monitor='loss'. Received: validate=False",
        ),
        (
            {"callbacks": [object(), 1]},
            "train.fit.callbacks[0]: expected a keras.callbacks.Callback. Received: <object",
        ),
        (
            {"callbacks": ["<__main__.Slow object at 0x7f00>"]},
            "train.fit.callbacks[0]: expected a keras.callbacks.Callback. Received: '<__main__."
            "Slow object at 0x7f00>' (str); a run's pipeline.toml records a callback as its "
            "repr: resume that run from Python, with Pipeline.run(resume_from=RUN_DIR)",
        ),
    ],
    ids=["monitor-typo", "monitor-alias", "patience-without-validation", "callback", "repr"],
)
def test_monitor_and_callbacks_are_checked_when_the_stage_is_built(
    params: dict[str, Any], message: str
) -> None:
    """A monitor the run never logs, or a callback that is no Keras callback: a ConfigError."""
    with pytest.raises(ConfigError) as info:
        train.fit(**params)
    assert str(info.value).startswith(message)


def test_monitor_accepts_every_logged_name() -> None:
    """loss, the metrics' logged names and their val_ variants are accepted."""
    import keras

    train.fit(monitor="val_auc", metrics=["accuracy", "AUC"], patience=1)
    train.fit(monitor="mean_absolute_error", metrics=["mae"], patience=1, validate=False)
    train.fit(monitor="loss", patience=1, validate=False)
    train.fit(callbacks=[keras.callbacks.TerminateOnNaN()])


def test_a_pipeline_file_names_the_monitor_field(tmp_path: Path) -> None:
    """From a pipeline file, the monitor error names plugins[i].monitor."""
    path = tmp_path / "p.toml"
    path.write_text(
        '[[plugins]]\nuse = "collect.digits"\n[[plugins]]\nuse = "models.mlp"\n'
        '[[plugins]]\nuse = "train.fit"\nmonitor = "val_acc"\npatience = 2\n'
    )
    with pytest.raises(ConfigError, match=r"^plugins\[2\]\.monitor: expected a value the run"):
        Pipeline.from_file(path)


def test_batches_instead_of_a_model_plan_are_a_batch_error(tmp_path: Path) -> None:
    """Behind a custom stage (where the order check stops), train.fit names what it got."""
    from rxpipe.operators import access, collect

    def passthrough(source: Any) -> Any:
        return source

    pipeline = Pipeline(
        collect.iris(), access.split(), passthrough, train.fit(epochs=1), runs_dir=tmp_path
    )
    with pytest.raises(StageError) as info:
        pipeline.run(progress=False)
    assert str(info.value).endswith(
        "BatchError: train.fit: expected a ModelPlan from a models.* stage. Received: Batch"
    )


@keras.saving.register_keras_serializable(package="rxpipe_tests")
class _Halved(keras.losses.Loss):  # type: ignore[misc]
    """A registered custom loss: half the mean squared error."""

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return keras.losses.mean_squared_error(y_true, y_pred) / 2


def test_a_registered_custom_loss_is_written_as_its_keras_config() -> None:
    """A loss class registered with Keras goes to pipeline.toml as a config that builds it
    again; an unregistered object stays its repr (resumable from Python only)."""
    from rxpipe.operators import collect, models

    stage = train.fit(loss=_Halved())
    params = Pipeline(collect.diabetes(), models.mlp(), stage, name="h").config.plugins[-1].params
    assert params["loss"]["registered_name"] == "rxpipe_tests>_Halved"
    rebuilt = keras.losses.get(params["loss"])
    assert isinstance(rebuilt, _Halved)
    train.fit(loss=params["loss"])  # the config passes the stage's checks

    class Unregistered(_Halved):
        pass

    stage = train.fit(loss=Unregistered())
    params = Pipeline(collect.diabetes(), models.mlp(), stage, name="h").config.plugins[-1].params
    assert params["loss"].startswith("<")

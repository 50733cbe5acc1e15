"""Tests of models.keras: a Keras model of your own, as an object, a function or an import path."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rxpipe
from rxpipe import ConfigError, StageError
from rxpipe.config import parse_config
from rxpipe.operators import access, collect, deploy, evaluate, models, process, train


def small(meta: rxpipe.DatasetMetadata) -> Any:
    """A softmax classifier for the data's samples and classes."""
    import keras

    return keras.Sequential(
        [
            keras.Input(meta.feature_spec.shape),
            keras.layers.Flatten(),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(meta.num_classes or 1, activation="softmax"),
        ]
    )


def digits_pipeline(model_stage: Any, runs_dir: Path, *after: Any, **fit: Any) -> rxpipe.Pipeline:
    rate = {} if "optimizer" in fit else {"learning_rate": 0.01}  # an object has its own
    fit = {"epochs": 3, **rate, **fit}
    return rxpipe.Pipeline(
        collect.digits(limit=400),
        access.split(0.8, 0.2, 0.0),
        access.batch(32),
        process.normalize(),
        model_stage,
        train.fit(**fit),
        *after,
        name="custom",
        runs_dir=runs_dir,
    )


@pytest.mark.slow
def test_a_function_builds_a_new_model_for_every_run(runs_dir: Path) -> None:
    """The function gets the data's metadata; each run trains a model of its own, which learns."""
    seen: list[rxpipe.DatasetMetadata] = []

    def build(meta: rxpipe.DatasetMetadata) -> Any:
        seen.append(meta)
        return small(meta)

    pipeline = digits_pipeline(models.keras(build), runs_dir)
    first, second = pipeline.run(progress=False), pipeline.run(progress=False)
    assert first.model is not second.model
    assert seen[0].feature_spec.shape == (8, 8, 1)
    assert seen[0].num_classes == 10
    assert first.history[-1]["val_accuracy"] > 0.6  # chance is 0.1
    np.testing.assert_allclose(first.model.get_weights()[0], second.model.get_weights()[0])


@pytest.mark.slow
def test_an_object_trains_in_place(runs_dir: Path) -> None:
    """A keras.Model object is the model trained: a second run goes on from its weights."""
    import keras

    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    before = model.get_weights()[0].copy()
    pipeline = digits_pipeline(models.keras(model), runs_dir, epochs=1)
    first = pipeline.run(progress=False)
    assert first.model is model
    assert not np.allclose(model.get_weights()[0], before)
    second = pipeline.run(progress=False)
    assert second.history[0]["loss"] < first.history[0]["loss"]  # it went on, not from scratch


@pytest.mark.slow
def test_logits_with_a_loss_object_and_metric_objects(runs_dir: Path) -> None:
    """A model without softmax trains with from_logits=True, metric objects log by name, and
    its export serves probabilities (the softmax of the logits)."""
    import json

    import keras

    from rxpipe.serving.bundle import CARD_FILE, Bundle
    from rxpipe.serving.inputs import rows_to_batch

    def logits(meta: rxpipe.DatasetMetadata) -> Any:
        return keras.Sequential(
            [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]
        )

    top2 = keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2")
    fit = {
        "loss": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        "metrics": ["accuracy", top2],
        "optimizer": keras.optimizers.SGD(0.1, momentum=0.9),
    }
    pipeline = digits_pipeline(models.keras(logits), runs_dir, deploy.export(), **fit)
    result = pipeline.run(progress=False)
    last = result.history[-1]
    assert last["val_accuracy"] > 0.8
    assert last["val_top2"] >= last["val_accuracy"]
    assert float(top2.result()) == 0.0  # the caller's metric object was copied, not updated
    assert result.trained.logits

    bundle_dir = Path(result.artifacts["model"])
    bundle = Bundle.load(bundle_dir)
    raw = np.arange(2 * 64).reshape(2, 8, 8, 1) % 17
    scores = bundle.predict(rows_to_batch(raw.tolist(), bundle.inputs))["scores"]
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)
    features = raw.astype("float32") / 16  # process.normalize's scaling of the digits
    logits_out = result.model.predict(features, verbose=0)
    np.testing.assert_allclose(scores, keras.ops.softmax(logits_out).numpy(), rtol=1e-4, atol=1e-6)
    card = json.loads((bundle_dir / CARD_FILE).read_text())
    assert card["scores"] == "softmax of the model's logits"

    again = pipeline.run(progress=False)  # the optimizer object is copied for every run too
    assert again.history[-1]["val_accuracy"] > 0.8


MODULE = """
import keras

def build(meta):
    return keras.Sequential([
        keras.Input(meta.feature_spec.shape), keras.layers.Flatten(),
        keras.layers.Dense(meta.num_classes, activation="softmax"),
    ])

class Net(keras.Model):
    def __init__(self):
        super().__init__()
        self.flat = keras.layers.Flatten()
        self.out = keras.layers.Dense(10, activation="softmax")

    def call(self, x):
        return self.out(self.flat(x))

def focal(y_true, y_pred):
    return keras.losses.sparse_categorical_crossentropy(y_true, y_pred)
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module of the user's, importable from the current directory (as `rxpipe run` sees it)."""
    name = f"user_nets_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


@pytest.mark.slow
def test_a_pipeline_file_names_the_model_by_import_path(user_module: str, tmp_path: Path) -> None:
    """From a file: a builder function, a subclassed model class (built for the data's
    shape), a loss function by import path; a Python run's pipeline.toml can be run again."""
    base = {
        "pipeline": {"name": "file", "runs_dir": str(tmp_path / "runs")},
        "plugins": [
            {"use": "collect.digits", "limit": 300},
            {"use": "access.split", "train": 0.8, "validation": 0.2, "test": 0.0},
            {"use": "access.batch", "size": 32},
            {"use": "process.normalize"},
            {"use": "models.keras", "model": f"{user_module}:build"},
            {
                "use": "train.fit",
                "epochs": 3,
                "learning_rate": 0.02,
                "loss": f"{user_module}:focal",
            },
        ],
    }
    result = rxpipe.Pipeline.from_config(parse_config(base)).run(progress=False)
    assert result.history[-1]["val_accuracy"] > 0.3
    written = (result.run_dir / "pipeline.toml").read_text()
    assert f'model = "{user_module}:build"' in written

    base["plugins"][4]["model"] = f"{user_module}:Net"
    result = rxpipe.Pipeline.from_config(parse_config(base)).run(progress=False)
    assert result.model.built
    assert result.history[-1]["loss"] < result.history[0]["loss"]

    import importlib

    module = importlib.import_module(user_module)
    pipeline = digits_pipeline(models.keras(module.build), tmp_path / "runs", epochs=1)
    run_dir = pipeline.run(progress=False).run_dir
    again = rxpipe.Pipeline.from_file(run_dir / "pipeline.toml").run(progress=False)
    assert again.history[0]["val_accuracy"] > 0.3


def test_an_import_path_that_does_not_import_names_the_field(user_module: str) -> None:
    """A missing module or name, or a string of another form: a ConfigError saying which."""
    with pytest.raises(ConfigError, match=r"^models\.keras\.model: expected an importable module"):
        models.keras("no_such_module_xyz:build")
    with pytest.raises(ConfigError, match=rf"expected '{user_module}' to define 'biuld'"):
        models.keras(f"{user_module}:biuld")
    with pytest.raises(ConfigError) as info:
        models.keras("<function build at 0x7f00>")
    assert "resume that run from Python, with Pipeline.run(resume_from=RUN_DIR)" in str(info.value)
    config = {"plugins": [{"use": "collect.digits"}, {"use": "models.keras", "model": 3}]}
    with pytest.raises(ConfigError, match=r"^plugins\[1\]\.model: expected a keras\.Model"):
        rxpipe.Pipeline.from_config(parse_config(config))


def test_a_function_must_take_the_metadata_or_nothing() -> None:
    """A function of two required arguments cannot be called: a ConfigError at construction."""

    def two(a: object, b: object) -> None: ...

    with pytest.raises(ConfigError, match=r"^models\.keras\.model: expected a function of the"):
        models.keras(two)


@pytest.mark.slow
def test_what_the_model_cannot_take_fails_when_training_starts(runs_dir: Path) -> None:
    """A function that returns no model, or a model for other samples: named errors."""
    import keras

    with pytest.raises(StageError) as info:
        digits_pipeline(models.keras(lambda: "not a model"), runs_dir).run(progress=False)
    message = str(info.value)
    assert "ConfigError: models.keras.model: expected 'test_what" in message
    assert "<lambda>' to return a keras.Model. Received: 'not a model' (str)" in message

    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10, activation="softmax")])
    with pytest.raises(StageError) as info:
        digits_pipeline(models.keras(other), runs_dir).run(progress=False)
    assert (
        "BatchError: models.keras: the model expects samples of shape (4,). Received: samples "
        "of shape (8, 8, 1)" in str(info.value)
    )


@pytest.mark.slow
def test_the_trained_model_evaluates_and_reports(runs_dir: Path) -> None:
    """evaluate.* works on a model of your own as on a built-in one."""
    pipeline = rxpipe.Pipeline(
        collect.digits(limit=400),
        access.split(0.7, 0.1, 0.2),
        access.batch(32),
        process.normalize(),
        models.keras(small),
        train.fit(epochs=4, learning_rate=0.01),
        evaluate.classification(),
        name="custom",
        runs_dir=runs_dir,
    )
    result = pipeline.run(progress=False)
    assert result.metrics["test"]["accuracy"] > 0.6


@pytest.mark.slow
def test_a_model_object_under_a_strategy_asks_for_a_function(runs_dir: Path) -> None:
    """A strategy's variables must be made in its scope: an object made before cannot be."""
    import keras

    model = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    pipeline = digits_pipeline(models.keras(model), runs_dir, strategy="mirrored", epochs=1)
    with pytest.raises(StageError) as info:
        pipeline.run(progress=False)
    assert "models.keras.model: expected a function that builds the model with " in str(info.value)


@pytest.mark.slow
def test_a_one_output_classifier_of_labelled_data_is_refused(runs_dir: Path) -> None:
    """Dense(1) with a sigmoid on 10 classes: refused when training starts, saying how to
    make a regressor, instead of logging a meaningless accuracy."""
    import keras

    def sigmoid(meta: rxpipe.DatasetMetadata) -> Any:
        return keras.Sequential(
            [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(1, "sigmoid")]
        )

    pipeline = digits_pipeline(models.keras(sigmoid), runs_dir, loss="binary_crossentropy")
    with pytest.raises(StageError) as info:
        pipeline.run(progress=False)
    assert (
        "models.keras: expected a model with one score per class (10) for a data set with "
        "label names. Received: a model with 1 output(s) per sample (a regressor of the class "
        "indices: end the model in a keras.layers.Rescaling layer" in str(info.value)
    )


def test_models_with_several_outputs_and_classes_with_defaults() -> None:
    """Two outputs are refused naming the field; a model class is made without arguments
    (its own defaults), not given the metadata as its first one."""
    import keras

    from rxpipe.testing import collect as run_all
    from rxpipe.testing import from_arrays

    x = np.zeros((4, 3), "float32")
    data = from_arrays(x, np.arange(4) % 2)
    meta = run_all(data)[0].metadata

    def two(meta: rxpipe.DatasetMetadata) -> Any:
        inputs = keras.Input((3,))
        return keras.Model(inputs, [keras.layers.Dense(2)(inputs), keras.layers.Dense(1)(inputs)])

    [plan] = run_all(data.pipe(models.keras(two)))
    with pytest.raises(ConfigError, match=r"^models\.keras\.model: expected a model with one "):
        plan.build(meta)

    class Units(keras.Model):  # type: ignore[misc]
        def __init__(self, units: int = 2, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.dense = keras.layers.Dense(units, activation="softmax")

        def call(self, x: Any) -> Any:
            return self.dense(x)

    [plan] = run_all(data.pipe(models.keras(Units)))
    built = plan.build(meta)
    assert built.dense.units == 2
    assert built.built


@pytest.mark.slow
@pytest.mark.parametrize("logits", [False, True], ids=["sigmoid", "logit"])
def test_a_binary_classifier_of_one_output(runs_dir: Path, logits: bool) -> None:
    """One sigmoid output (or one logit with from_logits=True) for two classes: binary
    cross-entropy by default, a binary accuracy, evaluation and a bundle serving both
    classes' probabilities."""
    import json

    import keras

    from rxpipe.serving.bundle import CARD_FILE, Bundle
    from rxpipe.serving.inputs import rows_to_batch

    def binary(meta: rxpipe.DatasetMetadata) -> Any:
        return keras.Sequential(
            [
                keras.Input(meta.feature_spec.shape),
                keras.layers.Dense(16, activation="relu"),
                keras.layers.Dense(1, activation=None if logits else "sigmoid"),
            ]
        )

    fit: dict[str, Any] = {"epochs": 8, "learning_rate": 0.01}
    if logits:
        fit["loss"] = keras.losses.BinaryCrossentropy(from_logits=True)
    pipeline = rxpipe.Pipeline(
        collect.breast_cancer(),
        access.split(0.7, 0.1, 0.2),
        access.batch(32),
        process.standardize(),
        models.keras(binary),
        train.fit(**fit),
        evaluate.classification(),
        deploy.export(),
        name="binary",
        runs_dir=runs_dir,
    )
    result = pipeline.run(progress=False)
    assert result.trained.task == "classification"
    assert result.history[-1]["val_accuracy"] > 0.85  # the majority class is 0.63
    assert result.metrics["test"]["accuracy"] > 0.85
    bundle_dir = Path(result.artifacts["model"])
    bundle = Bundle.load(bundle_dir)
    from sklearn.datasets import load_breast_cancer

    raw = load_breast_cancer().data[:5].astype("float32")
    out = bundle.predict(rows_to_batch(raw.tolist(), bundle.inputs))
    assert out["scores"].shape == (5, 2)
    np.testing.assert_allclose(out["scores"].sum(axis=1), 1.0, rtol=1e-5)
    assert out["class_ids"].tolist() == out["scores"].argmax(axis=1).tolist()
    card = json.loads((bundle_dir / CARD_FILE).read_text())
    assert card["task"] == "classification"
    assert card["scores"].startswith("both classes' probabilities, from the model's one output")

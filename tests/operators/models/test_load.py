"""Tests of models.load: .keras files, model bundles and SavedModels, frozen or re-headed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import reactivex

from rxpipe import BatchError, ConfigError, ModelPlan
from rxpipe.operators import collect, models
from rxpipe.operators.models._load import resolve
from rxpipe.testing import collect as run
from rxpipe.testing import from_arrays


def saved_mlp(path: Path) -> Path:
    """Save a small iris classifier (4 features, 3 classes) as a .keras file."""
    [plan] = run(reactivex.empty().pipe(collect.iris(), models.mlp(hidden=[8])))
    model = plan.build(run(plan.data)[0].metadata)
    model.save(path)
    return path


def built(stage: object, features: np.ndarray, labels: np.ndarray) -> object:  # type: ignore[type-arg]
    """The model a models.load stage builds for the given data."""
    [plan] = run(from_arrays(features, labels).pipe(stage))  # type: ignore[arg-type]
    assert isinstance(plan, ModelPlan)
    return plan.build(run(plan.data)[0].metadata)


def test_loaded_model_keeps_its_weights(tmp_path: Path) -> None:
    """Without options the loaded model trains as saved; freeze keeps only the top trainable."""
    import keras

    path = saved_mlp(tmp_path / "iris.keras")
    original = keras.saving.load_model(path)
    x = np.random.default_rng(0).random((5, 4)).astype("float32")
    model = built(models.load(str(path)), x, np.zeros(5, "int64"))
    np.testing.assert_allclose(model.predict(x, verbose=0), original.predict(x, verbose=0))  # type: ignore[attr-defined]
    frozen = built(models.load(str(path), freeze=True), x, np.zeros(5, "int64"))
    assert [layer.trainable for layer in frozen.layers[1:]][-1] is True  # type: ignore[attr-defined]
    assert not any(layer.trainable for layer in frozen.layers[1:-1])  # type: ignore[attr-defined]


def test_a_new_head_fits_new_classes(tmp_path: Path) -> None:
    """new_head replaces the output layer with one sized for this data's classes."""
    path = saved_mlp(tmp_path / "iris.keras")
    x = np.zeros((6, 4), "float32")
    model = built(models.load(str(path), new_head=True, freeze=True), x, np.arange(6) % 5)
    assert model.output_shape == (None, 5)  # type: ignore[attr-defined]
    base = model.layers[1]  # type: ignore[attr-defined]
    assert not base.trainable


def test_bundles_and_saved_models_load(tmp_path: Path) -> None:
    """A folder holding model.keras loads it; a SavedModel loads with a new head on top."""
    import keras

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    saved_mlp(bundle / "model.keras")
    x = np.zeros((3, 4), "float32")
    assert built(models.load(str(bundle)), x, np.zeros(3, "int64")).output_shape == (None, 3)  # type: ignore[attr-defined]
    exported = tmp_path / "saved"
    keras.saving.load_model(bundle / "model.keras").export(str(exported), verbose=False)
    model = built(models.load(str(exported), new_head=True), x, np.array([0, 1, 0]))
    assert model.output_shape == (None, 2)  # type: ignore[attr-defined]


def test_errors_name_the_path_and_the_shapes(tmp_path: Path) -> None:
    """A wrong path is a config error; data of another shape is explained at build time."""
    with pytest.raises(ConfigError, match=r"models\.load\.path: .*which does not exist"):
        models.load(str(tmp_path / "nothing.keras"))
    path = saved_mlp(tmp_path / "iris.keras")
    with pytest.raises(BatchError, match=r"expects samples of shape \(4,\). Received: .*\(7,\)"):
        built(models.load(str(path)), np.zeros((2, 7), "float32"), np.zeros(2, "int64"))


def saved_regression(path: Path) -> Path:
    """Save a small diabetes regressor (10 features, 8 hidden units) as a .keras file."""
    [plan] = run(reactivex.empty().pipe(collect.diabetes(), models.mlp(hidden=[8], dropout=0.0)))
    plan.build(run(plan.data)[0].metadata).save(path)
    return path


def diabetes_like(size: int = 6) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[type-arg]
    """Features of diabetes' shape and regression targets."""
    features = np.random.default_rng(0).random((size, 10)).astype("float32")
    return features, np.linspace(25.0, 346.0, size).astype("float32")


def fake_bundle(folder: Path, with_keras: bool = True) -> Path:
    """A bundle folder as deploy.export lays it out: model_card.json, model.keras, 1/."""
    import keras

    folder.mkdir()
    keras_file = saved_mlp(folder / "model.keras")
    keras.saving.load_model(keras_file).export(str(folder / "1"), verbose=False)
    (folder / "model_card.json").write_text("{}")
    if not with_keras:
        keras_file.unlink()
    return folder


def test_a_bundles_saved_model_folder_loads_the_bundles_keras_model(tmp_path: Path) -> None:
    """models.load('<bundle>/1') takes model.keras, not the SavedModel that takes raw input."""
    import keras

    bundle = fake_bundle(tmp_path / "model")
    assert resolve(str(bundle / "1")) == ("keras", bundle / "model.keras")
    x = np.random.default_rng(1).random((4, 4)).astype("float32")
    model = built(models.load(str(bundle / "1")), x, np.zeros(4, "int64"))
    original = keras.saving.load_model(bundle / "model.keras")
    np.testing.assert_allclose(model.predict(x, verbose=0), original.predict(x, verbose=0))  # type: ignore[attr-defined]
    plain = tmp_path / "plain"
    original.export(str(plain), verbose=False)  # a SavedModel outside any bundle still loads
    assert resolve(str(plain)) == ("saved_model", plain)


def test_a_bundle_without_its_keras_model_is_refused_with_the_reason(tmp_path: Path) -> None:
    """Without model.keras, neither the bundle nor its SavedModel loads: the errors say why."""
    bundle = fake_bundle(tmp_path / "model", with_keras=False)
    with pytest.raises(ConfigError) as info:
        models.load(str(bundle / "1"))
    assert str(info.value) == (
        f"models.load.path: expected the bundle folder ({bundle}), whose model.keras takes the "
        f"preprocessed features the pipeline feeds. Received: {str(bundle / '1')!r}, the "
        "SavedModel inside it, which takes raw input; and the bundle has no model.keras"
    )
    reason = "the model calls the SavedModel at '/elsewhere' through a TFSMLayer"
    card = {"keras_model": {"path": None, "reason": reason}}
    (bundle / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ConfigError) as info:
        models.load(str(bundle))
    assert str(info.value) == (
        "models.load.path: expected a model bundle holding model.keras, the Keras model that "
        f"takes the preprocessed features the pipeline feeds. Received: {str(bundle)!r}, a "
        f"bundle without it: {reason}"
    )


def test_a_new_head_replaces_the_whole_regression_head(tmp_path: Path) -> None:
    """new_head cuts below unit_scores → scores, so the new head sees the hidden units."""
    path = saved_regression(tmp_path / "diabetes.keras")
    x, y = diabetes_like()
    model = built(models.load(str(path), new_head=True, freeze=True), x, y)
    base = model.layers[1]  # type: ignore[attr-defined]
    assert base.output.shape == (None, 8)
    assert not {"unit_scores", "scores"} & {layer.name for layer in base.layers}
    assert [layer.name for layer in model.layers[2:]] == ["unit_scores", "scores"]  # type: ignore[attr-defined]
    assert model.output_shape == (None, 1)  # type: ignore[attr-defined]
    classes = built(models.load(str(path), new_head=True), x, np.arange(6) % 3)
    assert classes.layers[1].output.shape == (None, 8)  # type: ignore[attr-defined]
    assert classes.output_shape == (None, 3)  # type: ignore[attr-defined]


def test_freeze_keeps_the_last_layer_with_weights_trainable(tmp_path: Path) -> None:
    """A frozen regression model trains unit_scores (the Rescaling after it has no weights)."""
    path = saved_regression(tmp_path / "diabetes.keras")
    x, y = diabetes_like()
    model = built(models.load(str(path), freeze=True), x, y)
    trainable = [layer.name for layer in model.layers if layer.trainable_weights]  # type: ignore[attr-defined]
    assert trainable == ["unit_scores"]
    assert len(model.trainable_weights) == 2  # type: ignore[attr-defined]


def test_freeze_with_nothing_left_to_train_is_a_config_error(tmp_path: Path) -> None:
    """A model without trainable weights cannot be frozen but its top: the error says why."""
    import keras

    inputs = keras.Input((4,))
    path = tmp_path / "scale.keras"
    keras.Model(inputs, keras.layers.Rescaling(2.0, name="scores")(inputs)).save(path)
    x = np.zeros((3, 4), "float32")
    with pytest.raises(ConfigError, match=r"models\.load\.freeze: expected a model with a layer"):
        built(models.load(str(path), freeze=True), x, np.zeros(3, "float32"))


def test_a_frozen_saved_model_needs_a_new_head_at_construction(tmp_path: Path) -> None:
    """freeze without new_head on a SavedModel leaves nothing to train: refused up front."""
    import keras

    exported = tmp_path / "saved"
    keras.saving.load_model(saved_mlp(tmp_path / "iris.keras")).export(str(exported), verbose=False)
    with pytest.raises(ConfigError, match=r"models\.load\.freeze: expected new_head=True"):
        models.load(str(exported), freeze=True)


def test_saved_models_are_checked_against_the_data(tmp_path: Path) -> None:
    """A SavedModel's signature names the shape it takes; numeric data is cast to its dtype."""
    import keras
    import tensorflow as tf

    exported = tmp_path / "saved"
    keras.saving.load_model(saved_mlp(tmp_path / "iris.keras")).export(str(exported), verbose=False)
    with pytest.raises(BatchError, match=r"SavedModel expects samples of shape \(4,\), dtype "):
        built(models.load(str(exported)), np.zeros((2, 7), "float32"), np.zeros(2, "int64"))
    ints = built(models.load(str(exported)), np.ones((2, 4), "uint8"), np.zeros(2, "int64"))
    assert ints.predict(np.ones((2, 4), "uint8"), verbose=0).shape == (2, 3)  # type: ignore[attr-defined]
    unsigned = tmp_path / "unsigned"
    tf.saved_model.save(tf.Module(), str(unsigned))
    with pytest.raises(ConfigError, match=r"models\.load\.path: expected a SavedModel with a "):
        built(models.load(str(unsigned)), np.zeros((2, 4), "float32"), np.zeros(2, "int64"))


def test_a_keras_model_wrapping_a_saved_model_is_refused_with_the_reason(tmp_path: Path) -> None:
    """A model trained on a SavedModel (TFSMLayer) cannot load again: the error says why."""
    import keras

    exported = tmp_path / "saved"
    keras.saving.load_model(saved_mlp(tmp_path / "iris.keras")).export(str(exported), verbose=False)
    x = np.zeros((4, 4), "float32")
    wrapped = built(models.load(str(exported), new_head=True), x, np.array([0, 1, 0, 1]))
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    wrapped.save(bundle / "model.keras")  # type: ignore[attr-defined]
    with pytest.raises(ConfigError) as info:
        built(models.load(str(bundle)), x, np.array([0, 1, 0, 1]))
    message = str(info.value)
    assert message.startswith("models.load.path: expected a model made of Keras layers. Received: ")
    assert f"wraps the SavedModel {exported} in a TFSMLayer" in message
    assert "Keras does not load a TFSMLayer in safe mode" in message


@pytest.mark.slow
def test_an_exported_regression_bundle_loads_back_and_trains_frozen(tmp_path: Path) -> None:
    """From deploy.export's bundle, model/1 predicts as the original; freeze trains unit_scores."""
    import rxpipe
    from rxpipe.operators import access, deploy, process, train

    def stages() -> list[object]:
        return [collect.diabetes(), access.split(), process.standardize(), access.batch(32)]

    first = rxpipe.Pipeline(
        *stages(),
        models.mlp(hidden=[8], dropout=0.0, head="regression"),
        train.fit(epochs=2, learning_rate=0.01),
        deploy.export(),
        name="diabetes",
        runs_dir=tmp_path,
    ).run(progress=False)
    bundle = first.run_dir / "model"
    [plan] = run(first.trained.data.pipe(models.load(str(bundle / "1"))))
    features = np.concatenate([b.features for b in run(plan.data)])
    model = plan.build(run(plan.data)[0].metadata)
    np.testing.assert_allclose(
        model.predict(features, verbose=0), first.model.predict(features, verbose=0), rtol=1e-6
    )
    second = rxpipe.Pipeline(
        *stages(),
        models.load(str(bundle), freeze=True),
        train.fit(epochs=1, learning_rate=0.01),
        name="diabetes-frozen",
        runs_dir=tmp_path,
    ).run(progress=False)
    changed = {
        layer.name
        for layer, before in zip(second.model.layers, first.model.layers, strict=True)
        for a, b in zip(layer.get_weights(), before.get_weights(), strict=True)
        if not np.array_equal(a, b)
    }
    assert changed == {"unit_scores"}

"""Tests of models.load: .keras files, model bundles and SavedModels, frozen or re-headed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import reactivex

from rxpipe import BatchError, ConfigError, ModelPlan
from rxpipe.operators import collect, models
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

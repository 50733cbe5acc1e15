"""Tests of the model plugins: mlp, cnn, text_classifier, mobilenet_v2, resnet50."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import reactivex

from rxpipe import BatchError, ConfigError, DatasetMetadata, FeatureSpec, ModelPlan
from rxpipe.operators import collect, models, process
from rxpipe.testing import collect as run
from rxpipe.testing import from_arrays


def plan_of(*stages: object) -> ModelPlan:
    """The single plan the stages emit."""
    [plan] = run(reactivex.empty().pipe(*stages))  # type: ignore[arg-type]
    assert isinstance(plan, ModelPlan)
    return plan


def first_meta(plan: ModelPlan) -> DatasetMetadata:
    """The metadata of the plan's first batch."""
    return run(plan.data)[0].metadata


def test_mlp_classifies_when_the_data_has_label_names() -> None:
    """On wine, the MLP ends in a softmax over the 3 cultivars."""
    plan = plan_of(collect.wine(), models.mlp(hidden=[8]))
    model = plan.build(first_meta(plan))
    assert model.output_shape == (None, 3)
    assert model.layers[-1].get_config()["activation"] == "softmax"


def test_regression_heads_are_scaled_to_the_training_labels() -> None:
    """On diabetes, the output is rescaled by the labels' std and shifted by their mean."""
    plan = plan_of(collect.diabetes(), models.mlp(hidden=[8]))
    model = plan.build(first_meta(plan))
    labels = np.concatenate([b.labels for b in run(reactivex.empty().pipe(collect.diabetes()))])
    scaling = model.get_layer("scores").get_config()
    assert scaling["offset"] == pytest.approx([labels.mean()], rel=1e-5)
    assert scaling["scale"] == pytest.approx([labels.std()], rel=1e-4)
    assert model.output_shape == (None, 1)


def test_cnn_keeps_its_classifier_and_can_regress() -> None:
    """models.cnn classifies digits as before; head='regression' gives one output."""
    plan = plan_of(collect.digits(limit=50), models.cnn(filters=[4], dense=8))
    assert plan.build(first_meta(plan)).output_shape == (None, 10)
    images = np.random.default_rng(0).random((20, 8, 8, 1)).astype("float32")
    source = from_arrays(images, np.arange(20, dtype="float32"))
    [plan] = run(source.pipe(models.cnn(filters=[4], dense=8, head="regression")))
    assert plan.build(first_meta(plan)).output_shape == (None, 1)


def test_a_classification_head_needs_label_names() -> None:
    """Asking for classification on unnamed labels is an error naming the fix."""
    plan = plan_of(collect.diabetes(), models.mlp(head="classification"))
    with pytest.raises(BatchError, match=r"models\.mlp: expected a classification data set"):
        plan.build(first_meta(plan))


def test_one_class_is_an_error_not_a_one_output_softmax() -> None:
    """head='auto' on data with a single label name fails, as head='classification' does."""
    source = from_arrays(np.zeros((4, 3), "float32"), np.zeros(4, "int64"), split="train")
    meta = run(source)[0].metadata.evolve(label_names=("cat",))
    [plan] = run(source.pipe(models.mlp(hidden=[4])))
    with pytest.raises(BatchError, match=r"at least 2 label names. Received: .*\('cat',\)"):
        plan.build(meta)


@pytest.mark.parametrize("architecture", ["pooling", "conv"])
def test_text_classifier_sizes_its_embedding_from_the_vocabulary(architecture: str) -> None:
    """The embedding covers every token id process.vectorize can emit."""
    texts = np.array(["good film", "bad film", "good"], dtype=object)
    source = from_arrays(texts, np.array([1, 0, 1]), split="train")
    stage = models.text_classifier(architecture=architecture, embedding_dim=4, dense=4)
    [plan] = run(source.pipe(process.vectorize(sequence_length=6), stage))
    meta = first_meta(plan)
    model = plan.build(meta)
    embedding = next(layer for layer in model.layers if "embedding" in layer.name)
    assert embedding.input_dim == int(meta.feature_spec.value_range[1]) + 1  # type: ignore[index]
    assert model.output_shape == (None, 2)
    with pytest.raises(BatchError, match="expected token-id sequences"):
        [plan] = run(from_arrays(np.zeros((2, 3), "float32")).pipe(models.text_classifier()))
        plan.build(first_meta(plan))


def test_application_weights_are_never_downloaded(tmp_path: Path) -> None:
    """'imagenet' or a URL is refused with a hint; only local files are accepted."""
    with pytest.raises(ConfigError, match="never downloads weights"):
        models.mobilenet_v2(weights="imagenet")
    with pytest.raises(ConfigError, match=r"models\.resnet50\.weights: .*not a file"):
        models.resnet50(weights=str(tmp_path / "missing.h5"))
    with pytest.raises(ConfigError, match="freeze_base with random weights"):
        models.resnet50(freeze_base=True)


def test_activation_names_are_checked_at_construction() -> None:
    """A misspelt activation fails when the stage is made, naming the field and the fix."""
    with pytest.raises(ConfigError) as info:
        models.mlp(activation="rellu")
    assert str(info.value) == (
        "models.mlp.activation: expected a Keras activation name such as 'relu'. "
        "Received: 'rellu' (did you mean 'relu'?)"
    )
    with pytest.raises(ConfigError, match=r"Received: 'nope' \(one of celu, elu, "):
        models.mlp(activation="nope")
    for name in ("relu", "gelu", "linear", "leaky_relu"):
        models.mlp(activation=name)


@pytest.mark.slow
def test_a_weights_file_of_another_alpha_is_a_config_error(tmp_path: Path) -> None:
    """MobileNetV2 weights saved with alpha 0.35 do not fit alpha 1.0: the error names both."""
    import keras

    base = keras.applications.MobileNetV2(
        alpha=0.35, include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg"
    )
    path = tmp_path / "mobilenet.weights.h5"
    base.save_weights(path)
    images = np.zeros((2, 32, 32, 3), "float32")
    [plan] = run(from_arrays(images, np.array([0, 1])).pipe(models.mobilenet_v2(str(path))))
    with pytest.raises(ConfigError) as info:
        plan.build(first_meta(plan))
    message = str(info.value)
    assert message.startswith(
        "models.mobilenet_v2.weights: expected a weights file of the same architecture, "
        "mobilenetv2_1.00_32 without its top (include_top=False) and alpha=1.0. Received: "
        f"{str(path)!r}, which does not fit it: "
    )
    assert message.endswith(
        "(a weights file only fits the alpha it was saved with: set alpha to that one)"
    )


@pytest.mark.slow
def test_mobilenet_v2_loads_a_local_weights_file(tmp_path: Path) -> None:
    """A weights file saved from the same network is loaded; images must be 32×32 or more."""
    import keras

    base = keras.applications.MobileNetV2(
        alpha=0.35, include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg"
    )
    path = tmp_path / "mobilenet.weights.h5"
    base.save_weights(path)
    images = np.zeros((4, 32, 32, 3), "float32")
    stage = models.mobilenet_v2(weights=str(path), alpha=0.35, freeze_base=True)
    [plan] = run(from_arrays(images, np.array([0, 1, 0, 1])).pipe(stage))
    model = plan.build(first_meta(plan))
    loaded = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    for mine, theirs in zip(loaded.get_weights(), base.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert not loaded.trainable
    assert model.predict(images, verbose=0).shape == (4, 2)
    [small] = run(from_arrays(np.zeros((2, 16, 16, 3)), np.array([0, 1])).pipe(models.resnet50()))
    with pytest.raises(BatchError, match=r"at least 32×32"):
        small.build(first_meta(small))


@pytest.mark.slow
def test_resnet50_builds_with_random_weights() -> None:
    """ResNet50 (weights=None) builds for the data's shape and classes."""
    images = np.zeros((2, 32, 32, 3), "float32")
    [plan] = run(from_arrays(images, np.array([0, 2])).pipe(models.resnet50()))
    model = plan.build(first_meta(plan))
    assert model.output_shape == (None, 3)
    assert FeatureSpec((32, 32, 3), "float32") == first_meta(plan).feature_spec

"""Tests of models.text_classifier: pooling that is defined for empty texts, trained and served."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import rxpipe
from rxpipe import ModelPlan
from rxpipe.operators import access, collect, deploy, models, process, train
from rxpipe.operators.process._text_steps import TextVectorize
from rxpipe.testing import collect as run
from rxpipe.testing import from_arrays

TEXTS = ["good film", "bad film", "good", "", "   ", "?!"]


def built(architecture: str) -> keras.Model:
    """A small text classifier built on TEXTS (two of which have no tokens)."""
    features = np.empty(len(TEXTS), dtype=object)
    features[:] = TEXTS
    source = from_arrays(features, np.array([1, 0, 1, 0, 1, 0]), split="train")
    stage = models.text_classifier(architecture=architecture, embedding_dim=4, dense=4)
    [plan] = run(source.pipe(process.vectorize(sequence_length=5), stage))
    assert isinstance(plan, ModelPlan)
    return plan.build(run(plan.data)[0].metadata)


@pytest.mark.parametrize("architecture", ["pooling", "conv"])
def test_a_text_without_tokens_has_finite_outputs_and_gradients(architecture: str) -> None:
    """All padding pools to zeros, not 0 / 0: the scores and the gradients stay finite."""
    model = built(architecture)
    ids = np.array([[0, 0, 0, 0, 0], [2, 3, 0, 0, 0]], "int32")
    with tf.GradientTape() as tape:
        scores = model(ids, training=True)
        loss = keras.ops.sum(keras.ops.log(scores))
    gradients = tape.gradient(loss, model.trainable_variables)
    assert np.isfinite(np.asarray(scores)).all()
    assert all(np.isfinite(np.asarray(tf.convert_to_tensor(g))).all() for g in gradients)


def test_pooling_averages_the_tokens_only() -> None:
    """The pooled vector is the mean of the tokens' embeddings; padding does not count."""
    model = built("pooling")
    embedding = next(layer for layer in model.layers if isinstance(layer, keras.layers.Embedding))
    dense = next(layer for layer in model.layers if isinstance(layer, keras.layers.Dense))
    pooled = keras.Model(model.input, dense.input)
    vectors = np.asarray(embedding.embeddings)
    got = np.asarray(pooled(np.array([[2, 4, 0, 0, 0], [0, 0, 0, 0, 0]], "int32")))
    np.testing.assert_allclose(got[0], (vectors[2] + vectors[4]) / 2, rtol=1e-6)
    np.testing.assert_array_equal(got[1], np.zeros_like(got[1]))


def test_the_model_file_loads_in_safe_mode(tmp_path: Path) -> None:
    """The .keras file holds only Keras layers and ops: it loads without rxpipe's help."""
    model = built("pooling")
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    ids = np.array([[0, 0, 0, 0, 0], [2, 4, 3, 0, 0]], "int32")
    np.testing.assert_allclose(np.asarray(loaded(ids)), np.asarray(model(ids)), rtol=1e-6)


EDGE = ["", "   ", "Good FILM!", "good\x00 BAD film", "ΣΟΥΠΑ 🍅 film", "zzz qqq", "film " * 500]


@pytest.mark.slow
@pytest.mark.parametrize("output", ["int", "multi_hot"])
def test_training_and_serving_read_texts_alike(tmp_path: Path, output: str) -> None:
    """Empty texts train; the exported SavedModel on raw text scores as training's path does."""
    rows = [("a good film", "pos"), ("a bad film", "neg"), ("", "neg"), ("good\x00 GOOD", "pos")]
    csv = tmp_path / "texts.csv"
    csv.write_text("text,label\n" + "".join(f"{t},{label}\n" for t, label in rows * 6))
    model_stage = (
        models.text_classifier(embedding_dim=4, dense=4)
        if output == "int"
        else models.mlp(hidden=[4])
    )
    result = rxpipe.Pipeline(
        collect.text_csv(str(csv)),
        access.split(train=1.0, validation=0.0, test=0.0),
        process.label_encode(),
        process.vectorize(sequence_length=6, output=output),
        access.batch(8),
        model_stage,
        train.fit(epochs=2, learning_rate=0.05),
        deploy.export(),
        name=f"text-{output}",
        runs_dir=tmp_path / "runs",
    ).run(progress=False)
    bundle = Path(result.artifacts["model"])
    [config] = json.loads((bundle / "preprocessing.json").read_text())["steps"]
    config.pop("name")
    step = TextVectorize(**config)
    features = np.empty(len(EDGE), dtype=object)
    features[:] = EDGE
    trained = np.asarray(keras.saving.load_model(bundle / "model.keras")(step.apply(features)))
    served = tf.saved_model.load(str(bundle / "1")).signatures["serving_default"]
    scores = served(features=tf.constant([t.encode() for t in EDGE]))["scores"].numpy()
    assert np.isfinite(scores).all()
    np.testing.assert_allclose(scores, trained, rtol=1e-5, atol=1e-6)

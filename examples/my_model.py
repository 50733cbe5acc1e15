"""A Keras model of your own, for `models.keras` (see my_model.toml and the README).

`build` is called when training starts, with the data's metadata: the sample shape and the
class names come from the data, not from constants here. It outputs logits (no softmax),
so the pipeline gives `train.fit` a loss with `from_logits = true`; the exported bundle
still serves probabilities (their softmax).
"""

from __future__ import annotations

import keras

import rxpipe


def build(meta: rxpipe.DatasetMetadata) -> keras.Model:
    """A small CNN for the data's images and classes."""
    assert meta.num_classes is not None, "a classifier needs a data set with label names"
    return keras.Sequential(
        [
            keras.Input(meta.feature_spec.shape),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(meta.num_classes),  # logits
        ],
        name="my_cnn",
    )

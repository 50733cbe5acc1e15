"""The model card names the values of a vector input whose data set names them
(``inputs.features.columns``), as the raw input's spec records them."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import reactivex

from rxpipe.batch import DatasetMetadata, FeatureSpec
from rxpipe.context import atomic_write
from rxpipe.model import TrainedModel
from rxpipe.operators import deploy
from rxpipe.operators.process._tabular_steps import Standardize
from rxpipe.serving import Bundle

NAMES = ("alcohol", "malic_acid", "od280/od315_of_diluted_wines")


def export(meta: DatasetMetadata, folder: Path) -> dict[str, object]:
    """A linear classifier on 3 values written with ``meta``; its model card."""
    inputs = keras.Input((3,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    with atomic_write(folder / "model") as target:
        deploy.write_bundle(TrainedModel("linear", model, reactivex.empty(), meta), target)
    card: dict[str, object] = json.loads((folder / "model" / "model_card.json").read_text())
    return card


def test_the_card_lists_the_raw_inputs_column_names(tmp_path: Path) -> None:
    """Names recorded on the raw spec are the card's ``columns`` for ``features``, in
    order, though a recorded step gave the processed features a spec without names;
    Bundle reads them back."""
    raw = FeatureSpec((3,), "float32", columns=NAMES)
    meta = DatasetMetadata("wine", raw, ("a", "b")).with_preprocessor(
        Standardize(mean=(13.0, 2.0, 2.5), std=(1.0, 1.0, 0.5)), FeatureSpec((3,), "float32")
    )
    card = export(meta, tmp_path)
    assert card["inputs"] == {
        "features": {
            "dtype": "float32",
            "shape": [None, 3],
            "kind": "array",
            "columns": list(NAMES),
        }
    }
    bundle = Bundle.load(tmp_path)
    assert bundle.inputs["features"].columns == NAMES
    x = np.array([[13.0, 2.0, 2.5]], "float32")
    assert bundle.predict({"features": x})["scores"].shape == (1, 2)


def test_a_vector_without_names_has_no_columns_in_the_card(tmp_path: Path) -> None:
    """Without names (collect.numpy's arrays) the card says nothing of columns, and the
    bundle's input has none."""
    card = export(DatasetMetadata("arrays", FeatureSpec((3,), "float32"), ("a", "b")), tmp_path)
    assert "columns" not in card["inputs"]["features"]  # type: ignore[index]
    assert Bundle.load(tmp_path).inputs["features"].columns is None

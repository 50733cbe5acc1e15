"""A model card's ``columns`` for a vector input: read by Bundle, checked against the
input's shape; a card without them (written before) loads as before."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from rxpipe.errors import BundleError
from rxpipe.serving import Bundle
from rxpipe.serving.bundle import TensorInfo


def with_columns(regression_bundle: Path, folder: Path, columns: Any) -> Path:
    """A copy of the regression bundle (input ``features`` float32[3]) whose card gives
    ``columns`` for its input."""
    copy = shutil.copytree(regression_bundle, folder / "model")
    card_file = copy / "model_card.json"
    card = json.loads(card_file.read_text())
    card["inputs"]["features"]["columns"] = columns
    card_file.write_text(json.dumps(card))
    return copy


def test_the_cards_columns_name_the_inputs_values(regression_bundle: Path, tmp_path: Path) -> None:
    """Bundle.inputs gives the names; a card without them, None."""
    assert Bundle.load(regression_bundle).inputs["features"].columns is None
    bundle = Bundle.load(with_columns(regression_bundle, tmp_path, ["age", "bmi", "bp"]))
    info = bundle.inputs["features"]
    assert info.columns == ("age", "bmi", "bp")
    assert info.to_dict()["columns"] == ["age", "bmi", "bp"]
    assert TensorInfo.from_dict("features", info.to_dict()) == info


@pytest.mark.parametrize(
    ("columns", "received"),
    [
        (["age", "bmi"], "['age', 'bmi'] (list)"),
        (["age", "bmi", "age"], "['age', 'bmi', 'age'] (list)"),
        (["age", "bmi", 3], "['age', 'bmi', 3] (list)"),
        ("age,bmi,bp", "'age,bmi,bp' (str)"),
    ],
)
def test_columns_that_do_not_name_each_value_once_are_refused(
    regression_bundle: Path, tmp_path: Path, columns: Any, received: str
) -> None:
    """Too few names, a name twice, a non-string, or not a list: the card is named."""
    copy = with_columns(regression_bundle, tmp_path, columns)
    with pytest.raises(BundleError) as info:
        Bundle.load(copy)
    assert str(info.value) == (
        f"{copy / 'model_card.json'}: expected inputs.features.columns to name each value "
        f"of the input float32[3] once (3 distinct strings). Received: {received}"
    )

"""Serving input: what a missing value is in each input, as the training data wrote it."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from rxpipe.errors import PredictionInputError
from rxpipe.serving.bundle import TensorInfo
from rxpipe.serving.inputs import (
    FilledInputs,
    columns_to_batch,
    filled_inputs,
    parse_request,
    rows_to_batch,
)

TABLE = {
    "age": TensorInfo("age", "float32", (None,)),
    "city": TensorInfo("city", "string", (None,)),
    "kind": TensorInfo("kind", "string", (None,)),
    "score": TensorInfo("score", "float32", (None,)),
}
NAMES = list(TABLE)


def card(missing: list[str] | None) -> list[dict[str, object]]:
    """A model card's steps from collect.csv(missing=...) with -999 a missing number:
    fill_missing fills age and city, one_hot encodes kind; score is only scaled."""
    fill: dict[str, object] = {"name": "fill_missing", "columns": ["age", "city"]}
    encode: dict[str, object] = {"name": "one_hot", "columns": ["kind"], "categories": [["a"]]}
    if missing is not None:  # None: a card from before the steps recorded their strings
        fill["missing"] = encode["missing"] = missing
    return [
        {"name": "missing_numbers", "values": [-999.0], "columns": ["age", "score"]},
        fill,
        encode,
        {"name": "standardize", "columns": ["score"], "mean": [0.0], "std": [1.0]},
    ]


def test_null_is_the_text_the_model_reads_as_missing() -> None:
    """null in a string input becomes "" where the step filling it reads "" as missing (the
    default, and cards without missing strings), else its first missing string that a
    stripped cell can equal: with missing=["?"], "" stays a category and null is "?"."""

    def texts(missing: list[str] | None) -> list[str | None]:
        null_text = filled_inputs(card(missing), NAMES).null_text
        return [null_text["city"], null_text["kind"]]

    assert texts(["?", "-999"]) == ["?", "?"]
    assert texts(["NA", ""]) == ["", ""]
    assert texts(None) == ["", ""]
    assert filled_inputs(card([" ? ", "?"]), NAMES).null_text["city"] == "?"
    filled = filled_inputs(card(["?"]), NAMES)
    rows = [
        {"age": None, "city": None, "kind": None, "score": 1.0},
        {"age": 2.0, "city": "", "kind": "", "score": 1.0},
    ]
    batch = rows_to_batch(rows, TABLE, filled)
    assert batch["city"].tolist() == ["?", ""]
    assert batch["kind"].tolist() == ["?", ""]
    assert np.isnan(batch["age"][0])
    columns = {"age": [1.0], "city": [None], "kind": ["x"], "score": [0.0]}
    assert columns_to_batch(columns, TABLE, missing_ok=filled)["city"].tolist() == ["?"]
    body = {"instances": rows[:1]}
    assert parse_request(body, TABLE, filled)[0]["kind"].tolist() == ["?"]
    one = {"city": TABLE["city"]}
    alone = filled_inputs([{"name": "one_hot", "columns": ["city"], "missing": ["?"]}], ["city"])
    assert rows_to_batch([None, "a"], one, alone)["city"].tolist() == ["?", "a"]


def test_null_is_refused_in_text_the_model_reads_nothing_as_missing() -> None:
    """A step with no missing strings (collect.csv(missing=[])) reads no text as missing:
    null is refused there, naming the sample, as where the model fills nothing."""
    filled = filled_inputs(card([]), NAMES)
    assert filled.null_text["city"] is None
    row = {"age": 1.0, "city": None, "kind": "a", "score": 1.0}
    with pytest.raises(PredictionInputError) as info:
        rows_to_batch([row], TABLE, filled)
    assert str(info.value) == (
        "instances (input 'city'): expected strings (or {'b64': ...} objects; the model "
        "fills no missing values in this input). Received: null in sample 0"
    )


def test_a_missing_number_is_refused_where_the_model_fills_no_missing_values() -> None:
    """-999 in a float input the model fills is sent on (the model reads it as missing);
    in one it only scales, it would compute on NaN: refused naming value and sample, in
    either format, however it is written (-999, -999.0)."""
    filled = filled_inputs(card(["?"]), NAMES)
    assert filled.missing_numbers == {"age": (-999.0,), "score": (-999.0,)}
    rows = [{"age": -999, "city": "a", "kind": "a", "score": 1.5}]
    assert rows_to_batch(rows, TABLE, filled)["age"].tolist() == [-999.0]
    bad = [rows[0], {"age": 1.0, "city": "a", "kind": "a", "score": -999.0}]
    with pytest.raises(PredictionInputError) as info:
        rows_to_batch(bad, TABLE, filled)
    assert str(info.value) == (
        "instances (input 'score'): expected float32 values of shape () per sample, not "
        "-999.0 (a missing value in the training data, which the model does not fill in "
        "this input). Received: -999.0 in sample 1"
    )
    columns = {"age": [1.0], "city": ["a"], "kind": ["a"], "score": [-999]}
    with pytest.raises(PredictionInputError, match=r"inputs\['score'\]: expected .* not -999\.0"):
        columns_to_batch(columns, TABLE, missing_ok=filled)
    plain = rows_to_batch(bad, TABLE, set(filled))  # names only: nothing known of -999
    assert plain["score"].tolist() == [1.5, -999.0]


def test_filled_inputs_compare_and_pickle_as_their_names() -> None:
    """FilledInputs is a frozenset of names (older callers compare and test membership
    as before) that keeps its mappings through pickling."""
    filled = FilledInputs({"a"}, {"a": "?"}, {"b": (-1.0,)})
    assert filled == {"a"}
    assert "a" in filled
    assert "b" not in filled
    copy = pickle.loads(pickle.dumps(filled))
    assert copy == filled
    assert (copy.null_text, copy.missing_numbers) == ({"a": "?"}, {"b": (-1.0,)})

"""Prediction input checked against a model's inputs, with errors naming expected and received."""

from __future__ import annotations

import numpy as np
import pytest

from rxpipe.errors import PredictionInputError
from rxpipe.serving.bundle import TensorInfo
from rxpipe.serving.inputs import (
    columns_to_batch,
    filled_inputs,
    parse_request,
    rows_to_batch,
    to_array,
)

DIGIT = TensorInfo("features", "uint8", (None, 2, 2))
TABLE = {
    "age": TensorInfo("age", "float32", (None,)),
    "city": TensorInfo("city", "string", (None,)),
}


def test_rows_become_one_batch_in_the_inputs_dtype() -> None:
    """instances of a single-input model stack into one array of its dtype."""
    batch = rows_to_batch([[[0, 1], [2, 3]], [[4, 5], [6, 7]]], {"features": DIGIT})
    assert batch["features"].dtype == np.uint8
    assert batch["features"].shape == (2, 2, 2)


def test_integral_floats_are_accepted_for_integer_inputs() -> None:
    """3.0 is a fine uint8 value; 3.5 is not, and the error names it and its sample."""
    assert to_array([[[3.0, 0], [1, 2]]], DIGIT, "x").dtype == np.uint8
    with pytest.raises(PredictionInputError) as info:
        to_array([[[3.0, 0], [1, 2]], [[0, 0], [1.5, 2]]], DIGIT, "x")
    assert str(info.value) == (
        "x: expected uint8 values, integers in [0, 255], of shape (2, 2) per sample. "
        "Received: 1.5 in sample 1 at (1, 0)"
    )


@pytest.mark.parametrize(
    ("value", "received"),
    [
        (1e39, "1e+39, which overflows float32 in sample 1 at (0,)"),
        (float("nan"), "nan in sample 1 at (0,)"),
        (float("-inf"), "-inf in sample 1 at (0,)"),
    ],
)
def test_float_inputs_refuse_values_not_finite_in_their_dtype(value: float, received: str) -> None:
    """NaN, infinities and numbers too large for float32 are refused, naming sample and place."""
    spec = TensorInfo("features", "float32", (None, 2))
    assert to_array([[3.0e38, -1]], spec, "x").dtype == np.float32
    with pytest.raises(PredictionInputError) as info:
        to_array([[1, 2], [value, 0]], spec, "instances")
    assert str(info.value) == (
        f"instances: expected finite float32 values (magnitude at most 3.402823e+38). "
        f"Received: {received}"
    )


def test_out_of_range_integers_name_the_first_offender() -> None:
    """300 for a uint8 input names the range received and where the first bad value is."""
    with pytest.raises(PredictionInputError) as info:
        to_array([[[0, 1], [2, 3]], [[4, 300], [-1, 0]]], DIGIT, "x")
    assert str(info.value) == (
        "x: expected uint8 values in [0, 255]. Received: values in [-1, 300] "
        "(first 300 in sample 1 at (0, 1))"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            [[1, 2, 3]],
            r"x: expected uint8 values of shape \(2, 2\) per sample. Received: integers ",
        ),
        ([[[1, 2], [3]]], r"x: expected .* Received: ragged nested lists"),
        (
            [[[-1, 2], [3, 4]]],
            r"x: expected uint8 values in \[0, 255\]. Received: values in \[-1, 4\]",
        ),
        ([[["a", "b"], ["c", "d"]]], r"Received: the string 'a' in sample 0 at \(0, 0\)$"),
        ([], r"x: expected a batch of at least one sample .* Received: no samples"),
        (7, r"Received: a single value"),
        ([[[True, False], [True, True]]], r"Received: the boolean true in sample 0 at \(0, 0\)$"),
    ],
)
def test_bad_values_name_expected_and_received(value: object, message: str) -> None:
    """Each kind of bad value raises PredictionInputError saying what was wanted and got."""
    with pytest.raises(PredictionInputError, match=message):
        to_array(value, DIGIT, "x")


def test_named_inputs_take_objects_per_row_and_strings() -> None:
    """A model with several inputs takes {name: value} rows; text may come as b64 bytes."""
    batch = rows_to_batch(
        [{"age": 30, "city": "Oslo"}, {"age": 41.5, "city": {"b64": "TGltYQ=="}}], TABLE
    )
    assert batch["age"].tolist() == [30.0, 41.5]
    assert batch["city"].tolist() == ["Oslo", b"Lima"]


def test_rows_missing_an_input_are_refused() -> None:
    """A row without every named input names the row and the inputs expected."""
    with pytest.raises(
        PredictionInputError,
        match=r"instances\[1\]: expected an object with the inputs \['age', 'city'\]. "
        r"Received: row 1 lacks 'city'$",
    ):
        rows_to_batch([{"age": 1, "city": "a"}, {"age": 2}], TABLE)


def test_columns_must_hold_as_many_samples_each() -> None:
    """Columnar inputs of different lengths are refused with the sizes."""
    with pytest.raises(
        PredictionInputError, match=r"same number of samples .* \{'age': 2, 'city': 1\}"
    ):
        columns_to_batch({"age": [1, 2], "city": ["a"]}, TABLE)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            {"ages": [1]},
            "rows.npz: expected the inputs ['age', 'city']. Received: an object that lacks 'age', "
            "'city' and has the unknown key 'ages'",
        ),
        (
            {"age": [[1]], "city": ["a"]},
            "rows.npz['age']: expected float32 values of shape () per sample. ",
        ),
        ({"age": [1, 2], "city": ["a"]}, "rows.npz: expected the same number of samples"),
    ],
)
def test_columns_errors_start_with_where_they_came_from(inputs: object, message: str) -> None:
    """columns_to_batch(where=...) names the source (e.g. a file) instead of "inputs"."""
    with pytest.raises(PredictionInputError) as info:
        columns_to_batch(inputs, TABLE, where="rows.npz")
    assert str(info.value).startswith(message)


def test_text_inputs_refuse_numbers_and_bad_base64() -> None:
    """Strings only; {"b64": ...} must be valid base64 (said once, not wrapped twice)."""
    with pytest.raises(PredictionInputError, match="expected strings"):
        to_array([1, 2], TABLE["city"], "city")
    with pytest.raises(PredictionInputError) as info:
        to_array([{"b64": "!!!"}], TABLE["city"], "city")
    message = str(info.value)
    assert message.startswith("city: expected valid base64 in {'b64': ...}. Received: ")
    assert message.count("expected") == 1
    with pytest.raises(PredictionInputError) as info:  # a list where one text goes
        to_array([["a", "b"]], TABLE["city"], "input")
    assert "Received: strings of shape (2,) per sample" in str(info.value)


def test_text_inputs_take_arrays_of_strings_and_bytes() -> None:
    """A numpy array of bytes (as Bundle.predict_images builds) is a batch of strings."""
    column = np.empty(2, dtype=object)
    column[:] = [b"\x89PNG", b"GIF8"]
    assert to_array(column, TABLE["city"], "images").tolist() == [b"\x89PNG", b"GIF8"]
    with pytest.raises(
        PredictionInputError, match=r"images: expected strings .* Received: numbers"
    ):
        to_array(np.zeros(2), TABLE["city"], "images")


def test_lists_nested_too_deeply_are_refused() -> None:
    """Lists nested deeper than Python can recurse are a PredictionInputError, not a crash."""
    deep: list[object] = ["a"]
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(PredictionInputError, match=r"city: expected .* Received: .*too deeply"):
        to_array(deep, TABLE["city"], "city")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"instances": [[[0, 0], [0, 0]]], "inputs": [[[0, 0], [0, 0]]]}, "Received: both"),
        ({"rows": []}, r"Received: neither \(keys \['rows'\]\)"),
        ([1], "expected a JSON object with 'instances' or 'inputs'. Received: a list"),
        (
            {"instances": "text"},
            "instances: expected a non-empty list of samples. Received: a string",
        ),
    ],
)
def test_request_bodies_need_exactly_one_format(body: object, message: str) -> None:
    """A :predict body needs one of instances or inputs, as TensorFlow Serving says."""
    with pytest.raises(PredictionInputError, match=message):
        parse_request(body, {"features": DIGIT})


def test_request_reports_its_format() -> None:
    """parse_request says whether the body used rows (instances) or columns (inputs)."""
    sample = [[0, 1], [2, 3]]
    assert parse_request({"instances": [sample]}, {"features": DIGIT})[1] is True
    assert parse_request({"inputs": [sample]}, {"features": DIGIT})[1] is False


def test_null_and_nan_are_missing_values_where_the_model_fills_them() -> None:
    """With missing_ok, null is NaN for a float input and "" for text; NaN is taken too."""
    rows = [
        {"age": None, "city": "Oslo"},
        {"age": float("nan"), "city": None},
        {"age": 3, "city": "Lima"},
    ]
    batch = rows_to_batch(rows, TABLE, missing_ok={"age", "city"})
    assert batch["age"].dtype == np.float32
    assert np.isnan(batch["age"][:2]).all()
    assert batch["age"][2] == 3.0
    assert batch["city"].tolist() == ["Oslo", "", "Lima"]
    columns = columns_to_batch(
        {"age": [None, 1.5], "city": ["a", None]}, TABLE, missing_ok={"age", "city"}
    )
    assert columns["city"].tolist() == ["a", ""]
    body = {"instances": [{"age": None, "city": None}]}
    assert parse_request(body, TABLE, missing_ok={"age", "city"})[0]["city"].tolist() == [""]


def test_null_is_refused_where_the_model_fills_no_missing_values() -> None:
    """Without missing_ok for the input, null and NaN keep their clear 400-style errors."""
    with pytest.raises(PredictionInputError) as info:
        rows_to_batch([{"age": 1, "city": "a"}, {"age": None, "city": "b"}], TABLE)
    assert str(info.value) == (
        "instances (input 'age'): expected float32 values of shape () per sample (the model "
        "fills no missing values in this input). Received: null in sample 1"
    )
    with pytest.raises(
        PredictionInputError, match=r"fills no missing .* Received: null in sample 0$"
    ):
        rows_to_batch([{"age": 1, "city": None}], TABLE, missing_ok={"age"})
    with pytest.raises(PredictionInputError, match="expected finite float32 values"):
        rows_to_batch([{"age": float("nan"), "city": "a"}], TABLE, missing_ok={"city"})
    count = TensorInfo("n", "int64", (None,))
    with pytest.raises(PredictionInputError) as info:
        to_array([1, None], count, "n", missing_ok=True)
    assert str(info.value) == (
        "n: expected int64 values of shape () per sample (int64 inputs have no missing "
        "values). Received: null in sample 1"
    )


def test_infinities_stay_refused_where_missing_values_are_taken() -> None:
    """missing_ok takes NaN (missing), not infinity or overflow."""
    with pytest.raises(PredictionInputError) as info:
        to_array([1.0, float("inf")], TABLE["age"], "age", missing_ok=True)
    assert str(info.value) == (
        "age: expected finite or missing (NaN) float32 values (magnitude at most "
        "3.402823e+38). Received: inf in sample 1"
    )


def test_filled_inputs_reads_the_model_cards_preprocessing() -> None:
    """fill_missing columns, a matrix fill after concat_columns, and one_hot columns."""
    names = ["age", "city", "n", "note"]
    steps = [
        {"name": "one_hot", "columns": ["city"], "categories": [["a"]]},
        {"name": "concat_columns", "columns": ["age", "city"], "widths": [1, 1]},
        {"name": "fill_missing", "values": [0.0, 0.0], "columns": None},
    ]
    assert filled_inputs(steps, names) == {"age", "city"}
    assert filled_inputs([{"name": "fill_missing", "columns": None}], ["features"]) == {"features"}
    assert filled_inputs([{"name": "standardize", "columns": ["age"]}], names) == frozenset()
    assert filled_inputs([{"name": "fill_missing", "columns": ["n", "gone"]}], names) == {"n"}
    text = [{"name": "vectorize", "vocabulary": ["a"], "sequence_length": 4}]
    assert filled_inputs(text, ["text"]) == {"text"}  # no text reads as "", as in training


def test_rows_name_the_missing_and_the_unknown_keys() -> None:
    """A misspelt key is told apart: the key the row lacks, and the key nobody knows."""
    with pytest.raises(PredictionInputError) as info:
        rows_to_batch([{"agee": 1, "city": "a"}], TABLE)
    assert str(info.value).endswith("Received: row 0 lacks 'age' and has the unknown key 'agee'")
    with pytest.raises(PredictionInputError) as info:
        columns_to_batch({"age": [1], "city": ["a"], "notes": ["x"], "id": [7]}, TABLE)
    assert str(info.value).endswith("an object that has the unknown keys 'id', 'notes'")


@pytest.mark.parametrize(
    ("rows", "received"),
    [
        ([{"age": "52,000", "city": "a"}], "the string '52,000' in sample 0"),
        ([{"age": 3, "city": "a"}, {"age": "n/a", "city": "b"}], "the string 'n/a' in sample 1"),
        ([{"age": True, "city": "a"}], "the boolean true in sample 0"),
    ],
)
def test_a_string_in_a_number_column_is_named_with_its_sample(
    rows: list[dict[str, object]], received: str
) -> None:
    """A float input given a string (or a boolean) says which value, in which sample."""
    with pytest.raises(PredictionInputError) as info:
        rows_to_batch(rows, TABLE)
    assert str(info.value) == (
        f"instances (input 'age'): expected float32 values of shape () per sample. "
        f"Received: {received}"
    )


def test_inputs_the_model_does_not_use_may_be_left_out() -> None:
    """An optional input (a column the model does not use) is filled when left out, taken
    (null too) when sent; a required one is still required."""
    specs = {**TABLE, "notes": TensorInfo("notes", "string", (None,), optional=True)}
    batch = rows_to_batch([{"age": 1, "city": "a"}, {"age": 2, "city": "b", "notes": None}], specs)
    assert batch["notes"].tolist() == ["", ""]
    columns = columns_to_batch({"age": [1, 2], "city": ["a", "b"]}, specs)
    assert columns["notes"].tolist() == ["", ""]
    with pytest.raises(PredictionInputError) as info:
        rows_to_batch([{"age": 1, "notes": "x", "other": 0}], specs)
    assert str(info.value) == (
        "instances[0]: expected an object with the inputs ['age', 'city'] (and optionally "
        "['notes'], which the model does not use). Received: row 0 lacks 'city' and has the "
        "unknown key 'other'"
    )
